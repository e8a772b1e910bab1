package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/docker"
)

func pbFence(token uint64, id string) *agentpb.Fence {
	return FenceToPB(*fence(token, id))
}

// redeployRPC runs a Redeploy over client and returns its report, or the
// status of a refusal.
func redeployRPC(t *testing.T, client agentpb.AgentClient, req *agentpb.RedeployRequest) (*agentpb.Report, error) {
	t.Helper()
	stream, err := client.Redeploy(context.Background(), req)
	if err != nil {
		return nil, err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if r := ev.GetReport(); r != nil {
			return r, nil
		}
	}
}

func TestFencedAndClaimedRedeploysOverGRPC(t *testing.T) {
	w := newWorld(t)
	client, _ := serve(t, newTestAgent(t, w, w.addSlot("app-1", 7)), context.Background())
	ctx := context.Background()
	f := pbFence(8, "r8")
	f.ClaimTtl = durationpb.New(5 * time.Minute)
	rep, err := redeployRPC(t, client, &agentpb.RedeployRequest{Image: "app:v2", Origin: "rollout", Fence: f})
	if err != nil || rep.GetError() != "" {
		t.Fatalf("fenced redeploy: %v, %v", rep, err)
	}
	st, err := client.Status(ctx, &agentpb.StatusRequest{})
	if err != nil || st.GetFenceToken() != 8 || st.GetClaim().GetRolloutId() != "r8" || st.GetClaim().GetHolder() != "alice@ops" ||
		time.Until(st.GetClaimExpires().AsTime()) < 4*time.Minute {
		t.Fatalf("status %v, %v: want token 8, claimed by r8 for 5 minutes", st, err)
	}
	_, err = redeployRPC(t, client, &agentpb.RedeployRequest{Image: "app:v1", Fence: pbFence(7, "r7")})
	if status.Code(err) != codes.Aborted || !strings.HasPrefix(status.Convert(err).Message(), "fenced: rollout r7 (token 7) is older than rollout r8 (token 8, held by alice@ops)") {
		t.Fatalf("stale rollout: %v, want ABORTED naming both", err)
	}
	_, err = redeployRPC(t, client, &agentpb.RedeployRequest{Image: "app:v1", Origin: "redeploy by bob"})
	if status.Code(err) != codes.FailedPrecondition || !strings.HasPrefix(status.Convert(err).Message(), "host belongs to rollout r8 held by alice@ops since ") {
		t.Fatalf("a person's redeploy of a claimed host: %v, want FAILED_PRECONDITION", err)
	}
	rep, err = redeployRPC(t, client, &agentpb.RedeployRequest{Image: "app:v1", Origin: "redeploy by bob", BreakClaim: true})
	if err != nil || rep.GetError() != "" {
		t.Fatalf("--break-claim: %v, %v", rep, err)
	}
	if _, err := client.Promote(ctx, &agentpb.PromoteRequest{Fence: pbFence(3, "r3")}); status.Code(err) != codes.Aborted {
		t.Fatalf("stale promote: %v, want ABORTED", err)
	}
	h, err := client.History(ctx, &agentpb.HistoryRequest{})
	if err != nil || len(h.GetEntries()) != 2 || h.GetHostname() == "" {
		t.Fatalf("history %v, %v: want 2 entries", h, err)
	}
	bob, roll := h.GetEntries()[0], h.GetEntries()[1]
	if bob.GetOrigin() != "redeploy by bob (local)" || bob.GetRolloutId() != "" || bob.GetResultCode() != agentpb.SlotResult_SLOT_RESULT_REPLACED ||
		bob.GetImageBefore() != "app:v2" || bob.GetImageAfter() != "app:v1" || bob.GetStrategy() != StrategyStopFirst {
		t.Errorf("bob's entry %v", bob)
	}
	if roll.GetOrigin() != "rollout (local)" || roll.GetRolloutId() != "r8" || roll.GetFenceToken() != 8 || roll.GetKind() != "rollout" ||
		roll.GetDigestAfter() != "sha256:v2" || roll.GetPhases()["drain"] == nil || roll.GetTotal().AsDuration() <= 0 {
		t.Errorf("the rollout's entry %v", roll)
	}
	if h, err := client.History(ctx, &agentpb.HistoryRequest{RolloutId: "r8", Limit: 5}); err != nil || len(h.GetEntries()) != 1 {
		t.Errorf("history of r8: %v, %v", h, err)
	}
	if _, err := client.History(ctx, &agentpb.HistoryRequest{Limit: -1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a negative limit: %v, want INVALID_ARGUMENT", err)
	}
}

func TestClaimOverGRPC(t *testing.T) {
	w := newWorld(t)
	client, _ := serve(t, newTestAgent(t, w, w.addSlot("app-1", 7)), context.Background())
	ctx := context.Background()
	if _, err := client.Claim(ctx, &agentpb.ClaimRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a claim without a fence: %v, want INVALID_ARGUMENT", err)
	}
	resp, err := client.Claim(ctx, &agentpb.ClaimRequest{Fence: pbFence(5, "r5")})
	if err != nil || resp.GetClaim().GetRolloutId() != "r5" || resp.GetFenceToken() != 5 || resp.GetClaimExpires() == nil {
		t.Fatalf("claim: %v, %v", resp, err)
	}
	if _, err := client.Claim(ctx, &agentpb.ClaimRequest{Fence: pbFence(4, "r4"), Release: true}); status.Code(err) != codes.Aborted {
		t.Fatalf("a stale release: %v, want ABORTED", err)
	}
	resp, err = client.Claim(ctx, &agentpb.ClaimRequest{ForceRelease: true})
	if err != nil || resp.GetClaim() != nil || resp.GetFenceToken() != 5 {
		t.Fatalf("force release: %v, %v: want no claim, token 5", resp, err)
	}
	if st, err := client.Status(ctx, &agentpb.StatusRequest{}); err != nil || st.GetClaim() != nil || st.GetClaimExpires() != nil || st.GetFenceToken() != 5 {
		t.Fatalf("status after the release: %v, %v", st, err)
	}
}

// pullRPC runs a Pull and returns its messages and the stream's end.
func pullRPC(t *testing.T, client agentpb.AgentClient, req *agentpb.PullRequest) ([]*agentpb.PullProgress, error) {
	t.Helper()
	stream, err := client.Pull(context.Background(), req)
	if err != nil {
		return nil, err
	}
	var out []*agentpb.PullProgress
	for {
		p, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
}

func TestPullOverGRPC(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.pullProgressEvery = 10 * time.Millisecond
	client, _ := serve(t, a, context.Background())
	msgs, err := pullRPC(t, client, &agentpb.PullRequest{Image: "app:v2"})
	if err != nil || len(msgs) != 1 || !msgs[0].GetDone() || !msgs[0].GetAlready() || msgs[0].GetDigest() != "sha256:v2" {
		t.Fatalf("pull of an image the host has: %v, %v", msgs, err)
	}
	w.pullable("app:v3", &fakePull{every: 20 * time.Millisecond, steps: []docker.PullProgress{
		{Layers: 1, Size: 10, Downloaded: 5}, {Layers: 1, Size: 10, Downloaded: 10}, {Layers: 1, Done: 1, Size: 10, Downloaded: 10},
	}})
	msgs, err = pullRPC(t, client, &agentpb.PullRequest{Image: "app:v3", Fence: pbFence(2, "r2")})
	if err != nil || len(msgs) < 2 {
		t.Fatalf("pull: %v, %v: want progress, then done", msgs, err)
	}
	last := msgs[len(msgs)-1]
	if !last.GetDone() || last.GetAlready() || last.GetDigest() != "sha256:app:v3" || last.GetTotal() != 10 || last.GetStatus() != "Pull complete: 10 B of 10 B (1 layers done of 1)" {
		t.Fatalf("last message %v", last)
	}
	for _, m := range msgs[:len(msgs)-1] {
		if m.GetDone() || m.GetTotal() == 0 && m.GetStatus() == "" {
			t.Errorf("progress message %v", m)
		}
	}
	_, err = pullRPC(t, client, &agentpb.PullRequest{Image: "app:v9"})
	if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "app:v9") {
		t.Fatalf("an image no registry has: %v, want NOT_FOUND naming it", err)
	}
	if _, err := pullRPC(t, client, &agentpb.PullRequest{Image: "app:v3", Fence: pbFence(1, "r1")}); status.Code(err) != codes.Aborted {
		t.Fatalf("a stale rollout's pull: %v, want ABORTED", err)
	}
	if _, err := pullRPC(t, client, &agentpb.PullRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no image: %v, want INVALID_ARGUMENT", err)
	}
}

func TestTheCallerIsTheClientCertificatesNameOrLocal(t *testing.T) {
	tlsPeer := func(cert *x509.Certificate) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4000},
			AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}}})
	}
	for _, tc := range []struct {
		ctx  context.Context
		want string
	}{
		{tlsPeer(&x509.Certificate{Subject: pkix.Name{CommonName: "coordinator"}}), "coordinator"},
		{tlsPeer(&x509.Certificate{DNSNames: []string{"ops.example"}}), "ops.example"},
		{peer.NewContext(context.Background(), &peer.Peer{Addr: &net.UnixAddr{Name: "/run/haroll/agent.sock", Net: "unix"}}), "local"},
		{peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}}), "127.0.0.1:5"},
		{context.Background(), ""},
	} {
		if got := caller(tc.ctx); got != tc.want {
			t.Errorf("caller %q, want %q", got, tc.want)
		}
	}
}
