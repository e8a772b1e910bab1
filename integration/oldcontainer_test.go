package integration

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/haroll/haroll/integration/harness"
)

// Docker's side of the old container: one still in its shutdown grace, one
// created with --rm, one with a static IP and MAC address.

// startHostWith is startHost with more options.
func startHostWith(t *testing.T, addressing harness.Addressing, opts func(*harness.HostOptions)) *harness.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := harness.HostOptions{
		Dir: t.TempDir(), Name: fmt.Sprintf("hit%d", time.Now().UnixNano()%1e9), Image: images.V1, Weights: weights,
		Addressing: addressing, HealthTimeout: 10 * time.Second,
	}
	opts(&o)
	h, err := harness.StartHost(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// inspect returns `docker inspect -f format name`.
func inspect(t *testing.T, name, format string) string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", format, name).CombinedOutput()
	if err != nil {
		t.Fatalf("docker inspect %s: %v: %s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitLog waits until container name has logged want.
func waitLog(t *testing.T, name, want string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		out, _ := exec.Command("docker", "logs", name).CombinedOutput()
		if strings.Contains(string(out), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s did not log %q within %s", name, want, timeout)
		}
	}
}

// shutdownDelay is how long the old containers of the stopping test go on
// serving, healthy, after their stop signal (their stop timeout is 10 s).
const shutdownDelay = 6 * time.Second

// TestARollbackWaitsForAStoppingOldContainerBeforeReviving cuts a stop-first
// replacement off right after Docker sent the old container its stop signal,
// while the app runs its shutdown grace (healthy, still serving): by SIGTERM
// to `haroll redeploy` (its rollback runs at once), and by SIGKILL followed by
// `haroll recover`. Either way the old container must run and serve once the
// grace is over, and no request may be lost.
func TestARollbackWaitsForAStoppingOldContainerBeforeReviving(t *testing.T) {
	requireDeps(t)
	for _, tc := range []struct {
		name   string
		signal syscall.Signal
	}{
		{"SIGTERM to the redeploy", syscall.SIGTERM},
		{"SIGKILL, then recover", syscall.SIGKILL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // a host of its own: beside another case (main_test.go)
			h := startHostWith(t, harness.FixedPorts, func(o *harness.HostOptions) {
				o.ExtraRunArgs = func(int) []string { return []string{"-e", "SHUTDOWN_DELAY=" + shutdownDelay.String()} }
			})
			old := inspect(t, h.Names[0], "{{.Id}}")
			var signalled time.Time
			res := underLoad(t, h, func() {
				cli := exec.Command(harollBin, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--slot", "app-1", "--force")
				out, err := cli.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				cli.Stderr = cli.Stdout
				if err := cli.Start(); err != nil {
					t.Fatal(err)
				}
				go func() {
					sc := bufio.NewScanner(out)
					for sc.Scan() {
						t.Log(sc.Text())
					}
				}()
				// The old container got its stop signal: it serves on, healthy,
				// for shutdownDelay.
				waitLog(t, h.Names[0], "testapp: signalled", time.Minute)
				time.Sleep(500 * time.Millisecond)
				signalled = time.Now()
				_ = cli.Process.Signal(tc.signal)
				err = cli.Wait()
				t.Logf("redeploy ended %s after the signal: %v", time.Since(signalled).Round(time.Millisecond), err)
				if tc.signal == syscall.SIGKILL {
					if _, err := haroll(t, "recover", "--config", h.AgentYAML); err != nil {
						t.Errorf("recover: %v", err)
					}
				}
				// Past the old container's grace: a container revived during it
				// would have exited by now.
				time.Sleep(time.Until(signalled.Add(shutdownDelay + 3*time.Second)))
			})
			assertNoLoss(t, res)
			if got := inspect(t, h.Names[0], "{{.Id}} {{.State.Running}}"); got != old+" true" {
				t.Fatalf("%s: %s, want the old container %s running", h.Names[0], got, old[:12])
			}
			assertConsistent(t, h)
			if !slices.Contains(res.LastVersions, "v1") || len(res.LastVersions) != 1 {
				t.Errorf("versions served at the end: %v, want only v1", res.LastVersions)
			}
		})
	}
}

// TestAContainerCreatedWithRmIsNeverStoppedBeforeItsReplacementIsProven: a
// --rm container is deleted by Docker when it stops. With fixed host ports
// (stop-first) a redeploy is refused in preflight and changes nothing; with
// ephemeral ones it runs start-first, a broken image is rolled back to the
// old container, a good one replaces it, and the replacement is no --rm
// container.
func TestAContainerCreatedWithRmIsNeverStoppedBeforeItsReplacementIsProven(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	rm := func(o *harness.HostOptions) { o.ExtraRunArgs = func(int) []string { return []string{"--rm"} } }
	t.Run("stop-first is refused", func(t *testing.T) {
		h := startHostWith(t, harness.FixedPorts, rm)
		before := takeSnapshot(t, h)
		out, err := haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.Broken, "--slot", "app-1")
		if err == nil {
			t.Error("redeploy of a --rm container with a fixed host port succeeded")
		}
		if !strings.Contains(out, "--rm") || !strings.Contains(out, "AutoRemove") {
			t.Errorf("the message does not say the container was created with --rm (AutoRemove)")
		}
		if after := takeSnapshot(t, h); !slices.Equal(after.servers, before.servers) || !slices.Equal(after.containers, before.containers) {
			t.Errorf("the refused redeploy changed the host:\nbefore %v\nafter  %v", before, after)
		}
		assertServing(t, h, images.V1)
	})
	t.Run("start-first", func(t *testing.T) {
		h := startHostWith(t, harness.EphemeralPorts, rm)
		before := takeSnapshot(t, h)
		res := underLoad(t, h, func() {
			if _, err := haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.Broken, "--slot", "app-1"); err == nil {
				t.Error("redeploy of a broken image succeeded")
			}
		})
		assertBackOnV1(t, h, before, res)
		res = underLoad(t, h, func() {
			if _, err := haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2); err != nil {
				t.Errorf("redeploy: %v", err)
			}
		})
		assertNoLoss(t, res)
		assertServing(t, h, images.V2)
		for _, name := range h.Names {
			if got := inspect(t, name, "{{.HostConfig.AutoRemove}}"); got != "false" {
				t.Errorf("%s: AutoRemove %s: the replacement must survive its own stop", name, got)
			}
		}
	})
}

// TestStaticIPAndMACAddressesAreKept: containers with a fixed --ip and
// --mac-address on a user network cannot run beside their replacement, so
// auto replaces them stop-first, and the replacement has the same addresses.
func TestStaticIPAndMACAddressesAreKept(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	octet := 100 + rand.IntN(150)
	ip := func(i int) string { return fmt.Sprintf("10.213.%d.%d", octet, 11+i) }
	mac := func(i int) string { return fmt.Sprintf("02:42:0a:d5:%02x:%02x", octet, 11+i) }
	h := startHostWith(t, harness.UserNetwork, func(o *harness.HostOptions) {
		o.Subnet = fmt.Sprintf("10.213.%d.0/24", octet)
		// `docker run --ip --mac-address`: the docker CLI of this machine
		// sets a MAC per network, which API 1.41 cannot take.
		o.Run = func(ctx context.Context, name, netName string, i int) error {
			cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
			if err != nil {
				return err
			}
			defer cli.Close()
			stop := 10
			resp, err := cli.ContainerCreate(ctx,
				&container.Config{Image: images.V1, Labels: map[string]string{harness.TestLabel: "1"}, StopTimeout: &stop, MacAddress: mac(i)},
				&container.HostConfig{NetworkMode: container.NetworkMode(netName)},
				&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netName: {
					Aliases: []string{fmt.Sprintf("app%d", i+1)}, IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: ip(i)},
				}}}, nil, name)
			if err != nil {
				return err
			}
			return cli.ContainerStart(ctx, resp.ID, container.StartOptions{})
		}
	})
	const addrs = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.MacAddress}}{{end}}"
	for i, name := range h.Names {
		if got, want := inspect(t, name, addrs), ip(i)+" "+mac(i); got != want {
			t.Fatalf("%s: %s, want %s", name, got, want)
		}
	}
	var out string
	res := underLoad(t, h, func() {
		var err error
		out, err = haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2)
		if err != nil {
			t.Errorf("redeploy: %v", err)
		}
	})
	assertNoLoss(t, res)
	if strings.Contains(out, "rolled_back") || strings.Contains(out, "rollback") {
		t.Error("a slot was rolled back")
	}
	stats := assertServing(t, h, images.V2)
	for i, name := range h.Names {
		if got, want := inspect(t, name, addrs), ip(i)+" "+mac(i); got != want {
			t.Errorf("%s after the redeploy: %s, want %s", name, got, want)
		}
		if want := ip(i) + ":8080"; stats[i].Addr != want {
			t.Errorf("%s points at %s, want %s", stats[i].Server, stats[i].Addr, want)
		}
	}
}
