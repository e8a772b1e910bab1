package runtime

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// recordedFiles returns the replies recorded under testdata/ whose file
// names match pattern, as fuzz seeds.
func recordedFiles(f *testing.F, pattern string) []string {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no recorded reply matches testdata/%s", pattern)
	}
	var out []string
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// statCSV writes stats back as `show stat` CSV, with only the columns
// parseStat reads and check_rise empty for an unchecked server.
func statCSV(t *testing.T, stats []ServerStat) string {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("# ")
	w := csv.NewWriter(&b)
	rows := [][]string{{"pxname", "svname", "qcur", "scur", "status", "weight", "check_status", "addr",
		"check_health", "check_rise", "check_fall", "sid", "hrsp_2xx", "hrsp_5xx", "econ", "eresp"}}
	for _, s := range stats {
		rise := strconv.Itoa(s.CheckRise)
		if !s.Checked && s.CheckRise == 0 {
			rise = ""
		}
		rows = append(rows, []string{s.Backend, s.Server, strconv.Itoa(s.Qcur), strconv.Itoa(s.Scur), s.Status,
			strconv.Itoa(s.Weight), s.CheckStatus, s.Addr, strconv.Itoa(s.CheckHealth), rise, strconv.Itoa(s.CheckFall), strconv.Itoa(s.ID),
			i64(s.Counters.Responses - s.Counters.Hrsp5xx), i64(s.Counters.Hrsp5xx), i64(s.Counters.Econ), i64(s.Counters.Eresp)})
	}
	if err := w.WriteAll(rows); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }

func FuzzParseStat(f *testing.F) {
	for _, r := range recordedFiles(f, "*.csv") {
		f.Add(r)
	}
	f.Add("# pxname,svname,qcur,scur,status,weight,check_status,addr\napp,app1,,,UP,1,L7OK,127.0.0.1:80\n")
	f.Add("# pxname,svname,qcur,scur,status,weight,check_status,addr\napp,app1,x,0,UP,1,,\n")
	f.Add("# pxname,svname\napp,app1\n")
	f.Add("pxname,svname\n")
	f.Add("# \"unterminated\n")
	f.Fuzz(func(t *testing.T, out string) {
		stats, err := parseStat(out)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || stats != nil {
				t.Fatalf("parseStat: %d servers, %v; want none and ErrMalformed", len(stats), err)
			}
			return
		}
		for _, s := range stats {
			switch {
			case s.Server == "" || s.Server == "FRONTEND" || s.Server == "BACKEND":
				t.Fatalf("parseStat kept an aggregate or unnamed line: %+v", s)
			case s.Checked && s.Status == "no check":
				t.Fatalf("a \"no check\" server counts as checked: %+v", s)
			case s.FullyUp() && (!s.Checked || s.CheckRise <= 0):
				t.Fatalf("an unchecked server is fully up: %+v", s)
			case s.Serving() && s.Weight == 0:
				t.Fatalf("a server of weight 0 is serving: %+v", s)
			case s.Counters.Responses < s.Counters.Hrsp5xx || s.Counters.Hrsp5xx < 0 || s.Counters.Econ < 0 || s.Counters.Eresp < 0:
				t.Fatalf("counters out of order: %+v", s.Counters)
			}
		}
		// What was read survives being written back by header: no column is
		// taken for another.
		again, err := parseStat(statCSV(t, stats))
		if err != nil {
			t.Fatalf("parseStat of its own output: %v", err)
		}
		if !slices.Equal(again, stats) {
			t.Fatalf("parseStat of its own output differs:\n got %+v\nwant %+v", again, stats)
		}
	})
}

func FuzzParseInfo(f *testing.F) {
	for _, r := range recordedFiles(f, "show_info.txt") {
		f.Add(r)
	}
	f.Add("Pid: 1\nUptime_sec: 0\n")
	f.Add("Version: 2.8\nPid: x\nUptime_sec: 3\n")
	f.Add("Pid: 12\n")
	f.Add("Version:\nPid:  7 \r\nUptime_sec: -1")
	f.Fuzz(func(t *testing.T, out string) {
		info, err := parseInfo(out)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || info != (Info{}) {
				t.Fatalf("parseInfo = %+v, %v; want the zero Info and ErrMalformed", info, err)
			}
			return
		}
		if strings.TrimSpace(info.Version) != info.Version {
			t.Fatalf("Version %q has surrounding space", info.Version)
		}
		if info.Reloaded(info) {
			t.Fatalf("%+v counts as reloaded compared with itself", info)
		}
		again, err := parseInfo(fmt.Sprintf("Version: %s\nPid: %d\nUptime_sec: %d\n", info.Version, info.Pid, info.UptimeSec))
		if err != nil || again != info {
			t.Fatalf("parseInfo of %+v written back = %+v, %v", info, again, err)
		}
	})
}

func FuzzParseAdmin(f *testing.F) {
	for _, r := range recordedFiles(f, "servers_state_*.txt") {
		f.Add(r, "app", "app1")
		f.Add(r, "app", "app2")
	}
	header := "1\n# be_id be_name srv_id srv_name srv_admin_state srv_check_state\n"
	f.Add(header+"3 app 1 app1 8 6\n", "app", "app1")
	f.Add(header+"3 app 1 app1 1 0\n", "app", "app1")
	f.Add(header+"3 app 1 app1 x 6\n", "app", "app1")
	f.Add(header+"3 app 1 app1\n", "app", "app1")
	f.Add("1\n# be_name srv_name\n", "", "")
	f.Add("No such backend.\n", "app", "app1")
	f.Fuzz(func(t *testing.T, out, backend, server string) {
		a, err := parseAdmin(out, backend, server)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoSuchServer) || a != (Admin{}) {
				t.Fatalf("parseAdmin = %+v, %v; want the zero Admin and ErrMalformed or ErrNoSuchServer", a, err)
			}
			return
		}
		if a.State != StateReady && a.State != StateDrain && a.State != StateMaint {
			t.Fatalf("parseAdmin: state %q", a.State)
		}
		if ValidateName("backend", backend) != nil || ValidateName("server", server) != nil {
			return // Admin validates the names before asking
		}
		found := slices.ContainsFunc(strings.Split(out, "\n"), func(line string) bool {
			f := strings.Fields(line)
			return slices.Contains(f, backend) && slices.Contains(f, server)
		})
		if !found {
			t.Fatalf("parseAdmin found %s/%s in a reply with no line naming both", backend, server)
		}
	})
}

func FuzzParseReply(f *testing.F) {
	for _, r := range recordedFiles(f, "*.txt") {
		f.Add(r)
	}
	for _, s := range []string{"", "[3]: No such server.", "[7]:", "[x]: a", "[-]: a", "[+]: a", "[10]: a",
		"  [4]:  Weight unchanged.  \n", "[3]", "[３]: a", "\n[0]:\t\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := parseReply(raw)
		if r.severity < -1 || r.severity > 9 {
			t.Fatalf("parseReply(%q): severity %d, want -1..9", raw, r.severity)
		}
		if strings.TrimSpace(r.text) != r.text {
			t.Fatalf("parseReply(%q): text %q has surrounding space", raw, r.text)
		}
		trimmed := strings.TrimSpace(raw)
		if r.severity == -1 && r.text != trimmed {
			t.Fatalf("parseReply(%q): text %q, want the whole reply %q", raw, r.text, trimmed)
		}
		if r.severity >= 0 && !strings.HasPrefix(trimmed, fmt.Sprintf("[%d]:", r.severity)) {
			t.Fatalf("parseReply(%q): severity %d without its prefix", raw, r.severity)
		}
		if again := parseReply(fmt.Sprintf("[%d]: %s", r.severity, r.text)); r.severity >= 0 && again != r {
			t.Fatalf("parseReply(%q) = %+v, written back it is %+v", raw, r, again)
		}
		err := r.err("cmd")
		if (err != nil) != (r.severity >= 0 && r.severity <= 3) {
			t.Fatalf("parseReply(%q): severity %d gives error %v", raw, r.severity, err)
		}
		if err != nil && !errors.Is(err, ErrNoSuchServer) && !errors.Is(err, ErrNoSuchBackend) && !errors.Is(err, ErrCommand) {
			t.Fatalf("parseReply(%q): error %v wraps no sentinel", raw, err)
		}
	})
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"app", "app1", "web-1.example_2:80", "", "a;b", "a b", "a/b", "a#b", "a\tb", "a\nb",
		"a\x00b", "a\x7fb", "é", "a\u00a0b", "a\u0085b", "a\u2028b", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateName("server", s)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ValidateName(%q) = %v, want ErrInvalidName", s, err)
			}
			return
		}
		// The runtime API splits commands on ';' and newlines and words on
		// spaces and tabs; "be/srv" is split on '/'. Checked byte by byte, so
		// that invalid UTF-8 hides nothing. Only ASCII is asserted: non-ASCII
		// spaces and C1 controls (U+0085, U+00A0) are accepted today, although
		// the doc comment refuses "whitespace and control characters".
		if s == "" {
			t.Fatal("the empty name is accepted")
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c == ';' || c == '/' || c == '#' || c <= ' ' || c == 0x7f {
				t.Fatalf("ValidateName accepted %q with byte %#x at %d", s, c, i)
			}
		}
		ref, err := serverRef("app", s)
		if err != nil || ref != "app/"+s || strings.Count(ref, "/") != 1 {
			t.Fatalf("serverRef(app, %q) = %q, %v: want app/%s with one '/'", s, ref, err, s)
		}
	})
}
