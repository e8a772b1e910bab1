package agent

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent/agentpb"
)

// serve starts the service for a over a unix socket and returns a client.
func serve(t *testing.T, a *Agent, life context.Context) (agentpb.AgentClient, *Service) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	svc := NewService(life, a, "test")
	s := grpc.NewServer()
	agentpb.RegisterAgentServer(s, svc)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return agentpb.NewAgentClient(conn), svc
}

func TestRedeployOverGRPCStreamsPhasesThenTheReport(t *testing.T) {
	w := newWorld(t)
	client, _ := serve(t, newTestAgent(t, w, w.addSlot("app-1", 7)), context.Background())
	stream, err := client.Redeploy(context.Background(), &agentpb.RedeployRequest{Image: "app:v2", Origin: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	var report *agentpb.Report
	for {
		ev, err := stream.Recv()
		if err != nil {
			break
		}
		if p := ev.GetPhase(); p != nil {
			phases = append(phases, p.GetPhase())
		}
		if r := ev.GetReport(); r != nil {
			report = r
		}
	}
	if report == nil || report.GetError() != "" || report.GetSlots()[0].GetResult() != string(ResultReplaced) {
		t.Fatalf("report %v", report)
	}
	if report.GetSlots()[0].GetWeight() != 7 || report.GetSlots()[0].GetPhases()["drain"] == nil {
		t.Fatalf("report slot %v", report.GetSlots()[0])
	}
	if len(phases) < 6 || !slices.Contains(phases, "drain") {
		t.Fatalf("phases %v", phases)
	}
}

func TestRequestsThatCannotStartGetACode(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	client, _ := serve(t, a, context.Background())
	recvErr := func(req *agentpb.RedeployRequest) codes.Code {
		stream, err := client.Redeploy(context.Background(), req)
		if err != nil {
			return status.Code(err)
		}
		_, err = stream.Recv()
		return status.Code(err)
	}
	for _, tc := range []struct {
		req  *agentpb.RedeployRequest
		want codes.Code
	}{
		{&agentpb.RedeployRequest{}, codes.InvalidArgument},
		{&agentpb.RedeployRequest{Image: "Bad Image"}, codes.InvalidArgument},
		{&agentpb.RedeployRequest{Image: "app:v2", Slots: []string{"nope"}}, codes.InvalidArgument},
		{&agentpb.RedeployRequest{Image: "app:v9"}, codes.FailedPrecondition},
	} {
		if got := recvErr(tc.req); got != tc.want {
			t.Errorf("%v: code %s, want %s", tc.req, got, tc.want)
		}
	}
	lock, err := AcquireLock(a.cfg.StateDir, "pid 1: rollout of app:v3")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	if got := recvErr(&agentpb.RedeployRequest{Image: "app:v2"}); got != codes.ResourceExhausted {
		t.Errorf("busy host: code %s, want ResourceExhausted", got)
	}
	st, err := client.Status(context.Background(), &agentpb.StatusRequest{})
	if err != nil || st.GetBusy() != "pid 1: rollout of app:v3" || len(st.GetSlots()) != 1 {
		t.Fatalf("status %v, %v", st, err)
	}
}

func TestALostCallerDoesNotStopTheReplacement(t *testing.T) {
	w := newWorld(t)
	w.sessions = 200 // the drain takes a while
	client, svc := serve(t, newTestAgent(t, w, w.addSlot("app-1", 7)), context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := client.Redeploy(ctx, &agentpb.RedeployRequest{Image: "app:v2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // the drain event: the slot is under way
		t.Fatal(err)
	}
	cancel()
	svc.Wait()
	if c := w.byName("app-1"); c.Image != "app:v2" || !c.Running {
		t.Fatalf("the replacement stopped with its caller: %+v", c)
	}
	if w.servers["app/srv-app-1"].stat.Weight != 7 {
		t.Fatal("weight not restored")
	}
}

func TestShuttingDownRollsTheSlotInProgressBackAndStartsNoOther(t *testing.T) {
	w := newWorld(t)
	w.sessions = 200
	life, stop := context.WithCancel(context.Background())
	client, svc := serve(t, newTestAgent(t, w, w.addSlot("app-1", 7), w.addSlot("app-2", 3)), life)
	stream, err := client.Redeploy(context.Background(), &agentpb.RedeployRequest{Image: "app:v2"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		stop() // SIGTERM
	}()
	var report *agentpb.Report
	for {
		ev, err := stream.Recv()
		if err != nil {
			break
		}
		if r := ev.GetReport(); r != nil {
			report = r
		}
	}
	svc.Wait()
	if report == nil || report.GetError() == "" || report.GetSlots()[1].GetResult() != string(ResultNotRun) {
		t.Fatalf("report %v", report)
	}
	for _, name := range []string{"app-1", "app-2"} {
		if c := w.byName(name); !c.Running {
			t.Errorf("%s not running: %+v", name, c)
		}
	}
	if w.servers["app/srv-app-1"].stat.Weight != 7 || w.servers["app/srv-app-2"].stat.Weight != 3 {
		t.Fatal("a server was left drained")
	}
}
