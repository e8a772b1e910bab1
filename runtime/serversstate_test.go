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

// Recorded from HAProxy 2.6.12 after a reload that loaded a server-state
// file (integration/statefile_test.go): ip disabled at runtime (1), ipb
// declared `disabled` and enabled at runtime (4: the configuration's bit
// only), host and libc never in maintenance (0).
const reloadedState = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 app 1 ip 127.0.0.1 0 1 5 10 0 8 2 0 14 0 0 0 - 45437 - 0 0 - - 0
3 app 2 ipb 127.0.0.1 2 4 15 20 0 1 0 2 6 0 0 0 - 40002 - 0 0 - - 0
3 app 3 host 127.0.0.3 2 0 25 30 0 1 0 3 6 0 0 0 localhost 40003 - 0 0 - - 0
3 app 4 libc 127.0.0.1 2 0 35 40 0 1 0 3 6 0 0 0 localhost 40004 - 0 0 - - 0
`

func TestAServerDeclaredDisabledAndEnabledSinceIsNotInMaintenance(t *testing.T) {
	for server, want := range map[string]State{"ip": StateMaint, "ipb": StateReady, "host": StateReady, "libc": StateReady} {
		got, err := parseAdmin(reloadedState, "app", server)
		if err != nil || got.State != want {
			t.Errorf("%s: %+v, %v; want %s", server, got, err, want)
		}
	}
	if err := CheckServersState(reloadedState); err != nil {
		t.Errorf("a state file HAProxy loaded: %v", err)
	}
}
