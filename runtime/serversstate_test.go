package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestServersStateReturnsTheDumpAsAStateFileReadsIt(t *testing.T) {
	for _, v := range recordedVersions {
		t.Run(v.name, func(t *testing.T) {
			reply := recordedIn(t, v.dir, "servers_state_app.txt")
			f, c := newFakeUnix(t, func(string) string { return reply })
			got, err := c.ServersState(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if cmds := f.seen(); len(cmds) != 1 || cmds[0] != "show servers state" {
				t.Fatalf("sent %q, want one `show servers state`", cmds)
			}
			if !strings.HasPrefix(got, "1\n# be_id be_name srv_id srv_name srv_addr ") || !strings.HasSuffix(got, " 0\n") {
				t.Fatalf("got %q, want the version line, the header and the servers, ending with a newline", got)
			}
			if n := strings.Count(got, "\n3 app "); n != 3 {
				t.Fatalf("%d server lines, want 3: %q", n, got)
			}
		})
	}
}

func TestServersStateRefusesAReplyThatIsNotAStateFile(t *testing.T) {
	for name, reply := range map[string]string{
		"an error":          "[3]: Unknown command",
		"a message":         "Permission denied.",
		"no header":         "1\n3 app 1 app1 127.0.0.1 2 0 7 7 1 15 3 3 6 0 0 0 - 44945 - 0 0 - - 0",
		"a stat csv":        "# pxname,svname,qcur,qmax\napp,app1,0,0",
		"a version, alone":  "1",
		"a header, no name": "1\n# be_id srv_id",
	} {
		t.Run(name, func(t *testing.T) {
			_, c := newFakeUnix(t, func(string) string { return reply })
			got, err := c.ServersState(context.Background())
			if err == nil {
				t.Fatalf("accepted %q", got)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrCommand) {
				t.Fatalf("error %v, want ErrMalformed or ErrCommand", err)
			}
		})
	}
}
