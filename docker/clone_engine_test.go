package docker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	"github.com/haroll/haroll/docker"
)

func TestACloneKeepsTheOperatorsSettingsAndTakesTheNewImagesDefaults(t *testing.T) {
	c, api := engine(t), rawAPI(t)
	ctx := testContext(t, 60*time.Second)
	v1, v2 := testImage(t, imageV1), testImage(t, imageV2)
	netA, netB := createNetwork(t, api), createNetwork(t, api)
	name := uniqueName(t, "web")
	stopTimeout := 3

	oldID := createContainer(t, api, name,
		&container.Config{
			Image:        v1,
			Env:          []string{"EXTRA=1", "WARMUP=100ms"},
			Labels:       map[string]string{"app": "web"},
			ExposedPorts: nat.PortSet{"8080/tcp": {}},
			Volumes:      map[string]struct{}{"/data": {}},
			StopTimeout:  &stopTimeout,
		},
		&container.HostConfig{
			NetworkMode:   container.NetworkMode(netA),
			PortBindings:  nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: ""}}},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
			Resources:     container.Resources{Memory: 64 << 20},
		},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netA: {Aliases: []string{"web-a"}}}},
	)
	if err := api.NetworkConnect(ctx, netB, oldID, &network.EndpointSettings{Aliases: []string{"web-b"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, oldID); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx, oldID, 0); err != nil {
		t.Fatal(err)
	}
	oldC, err := c.Inspect(ctx, oldID)
	if err != nil {
		t.Fatal(err)
	}
	if got := getVersion(t, ctx, oldC); got != "v1" {
		t.Fatalf("old container answers version %q, want v1", got)
	}

	// The replacement, as the agent does it.
	if err := c.Stop(ctx, oldID); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename(ctx, oldID, name+"-old"); err != nil {
		t.Fatal(err)
	}
	newID, err := c.Clone(ctx, oldID, v2, name)
	if err != nil {
		t.Fatal(err)
	}
	removeContainerLater(t, api, newID)
	if err := c.Start(ctx, newID); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx, newID, 0); err != nil {
		t.Fatal(err)
	}
	newC, err := c.Inspect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if got := getVersion(t, ctx, newC); got != "v2" {
		t.Fatalf("clone answers version %q, want v2", got)
	}

	raw, err := api.ContainerInspect(ctx, newID)
	if err != nil {
		t.Fatal(err)
	}
	v2Image, err := api.ImageInspect(ctx, v2)
	if err != nil {
		t.Fatal(err)
	}
	cfg, hc := raw.Config, raw.HostConfig
	for _, want := range []string{"EXTRA=1", "WARMUP=100ms", "VERSION=v2"} {
		if !slices.Contains(cfg.Env, want) {
			t.Errorf("Env %q lacks %s", cfg.Env, want)
		}
	}
	if slices.Contains(cfg.Env, "VERSION=v1") {
		t.Errorf("Env %q kept the old image's VERSION=v1", cfg.Env)
	}
	if cfg.Labels["app"] != "web" || cfg.Labels["org.example.flavour"] != "v2" {
		t.Errorf("Labels = %v, want app=web and the new image's org.example.flavour=v2", cfg.Labels)
	}
	if cfg.StopTimeout == nil || *cfg.StopTimeout != stopTimeout {
		t.Errorf("StopTimeout = %v, want %d", cfg.StopTimeout, stopTimeout)
	}
	if cfg.Hostname != newID[:12] {
		t.Errorf("Hostname = %q, want Docker's default %q (the old one's was not explicit)", cfg.Hostname, newID[:12])
	}
	if cfg.Healthcheck == nil || !slices.Equal(cfg.Healthcheck.Test, v2Image.Config.Healthcheck.Test) {
		t.Errorf("Healthcheck = %+v, want the new image's", cfg.Healthcheck)
	}
	if hc.RestartPolicy.Name != container.RestartPolicyUnlessStopped || hc.Memory != 64<<20 {
		t.Errorf("RestartPolicy %v, Memory %d: not kept", hc.RestartPolicy, hc.Memory)
	}
	if b := hc.PortBindings["8080/tcp"]; len(b) != 1 || b[0].HostIP != "127.0.0.1" || b[0].HostPort != "" {
		t.Errorf("PortBindings = %v, want the ephemeral 127.0.0.1 binding as configured", hc.PortBindings)
	}
	for netName, alias := range map[string]string{netA: "web-a", netB: "web-b"} {
		ep, ok := newC.Networks[netName]
		if !ok || !slices.Contains(ep.Aliases, alias) {
			t.Errorf("network %s: endpoint %+v, want alias %s", netName, ep, alias)
		}
		if rawEP := raw.NetworkSettings.Networks[netName]; rawEP != nil && slices.Contains(rawEP.Aliases, oldID[:12]) {
			t.Errorf("network %s: the old container's short ID alias was copied: %v", netName, rawEP.Aliases)
		}
	}
	if got, want := volumeAt(t, ctx, api, newID, "/data"), volumeAt(t, ctx, api, oldID, "/data"); got == "" || got != want {
		t.Errorf("volume at /data = %q, want the old container's %q", got, want)
	}
}

func TestCloningOntoATakenNameIsErrNameConflict(t *testing.T) {
	c, api := engine(t), rawAPI(t)
	ctx := testContext(t, 20*time.Second)
	from := createContainer(t, api, uniqueName(t, "from"), &container.Config{Image: testImage(t, imageV1)}, nil, nil)
	taken := uniqueName(t, "taken")
	createContainer(t, api, taken, &container.Config{Image: testImage(t, imageV1)}, nil, nil)

	if _, err := c.Clone(ctx, from, testImage(t, imageV2), taken); !errors.Is(err, docker.ErrNameConflict) {
		t.Fatalf("Clone: got %v, want ErrNameConflict", err)
	}
}

func TestCloningAnUnknownContainerIsErrContainerNotFound(t *testing.T) {
	c := engine(t)
	ctx := testContext(t, 10*time.Second)
	if _, err := c.Clone(ctx, uniqueName(t, "missing"), testImage(t, imageV2), uniqueName(t, "new")); !errors.Is(err, docker.ErrContainerNotFound) {
		t.Fatalf("Clone: got %v, want ErrContainerNotFound", err)
	}
}

// getVersion asks the test app published on 8080/tcp which version it runs.
func getVersion(t *testing.T, ctx context.Context, c docker.Container) string {
	t.Helper()
	binding, ok := c.HostPort("8080/tcp")
	if !ok {
		t.Fatalf("container %s publishes no host port for 8080/tcp: %v", c.Name, c.Ports)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", binding.HostPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("X-Version")
}

func volumeAt(t *testing.T, ctx context.Context, api interface {
	ContainerInspect(context.Context, string) (container.InspectResponse, error)
}, id, dest string) string {
	t.Helper()
	raw, err := api.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range raw.Mounts {
		if m.Destination == dest {
			return m.Name
		}
	}
	return ""
}

// TestACloneOfAStaticAddressedRmContainerKeepsItsAddressesAndIsNoRm: the
// clone of a container with --ip, --mac-address and --rm takes, once the old
// one has stopped and is gone, the same IP and MAC, and Docker keeps it when
// it stops; Inspect reports what makes such a container unable to run
// beside its clone.
func TestACloneOfAStaticAddressedRmContainerKeepsItsAddressesAndIsNoRm(t *testing.T) {
	c, api := engine(t), rawAPI(t)
	ctx := testContext(t, 60*time.Second)
	octet := 100 + int(time.Now().UnixNano()%150)
	netName := uniqueName(t, "static")
	_, err := api.NetworkCreate(ctx, netName, network.CreateOptions{
		Labels: map[string]string{"haroll.test": "1"},
		IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: fmt.Sprintf("10.213.%d.0/24", octet)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = api.NetworkRemove(ctx, netName)
	})
	ip, mac := fmt.Sprintf("10.213.%d.21", octet), fmt.Sprintf("02:42:0a:d5:%02x:15", octet)
	name := uniqueName(t, "static")
	oldID := createContainer(t, api, name,
		&container.Config{Image: testImage(t, imageV1), MacAddress: mac},
		&container.HostConfig{NetworkMode: container.NetworkMode(netName), AutoRemove: true},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netName: {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: ip}}}},
	)
	if err := c.Start(ctx, oldID); err != nil {
		t.Fatal(err)
	}
	old, err := c.Inspect(ctx, oldID)
	if err != nil {
		t.Fatal(err)
	}
	if !old.AutoRemove || old.MacAddress != mac || !slices.Equal(old.StaticAddresses, []string{ip + " on " + netName}) {
		t.Fatalf("Inspect: AutoRemove %v, MacAddress %q, StaticAddresses %v", old.AutoRemove, old.MacAddress, old.StaticAddresses)
	}
	if ok, why := old.CanRunBeside(); ok {
		t.Fatal("CanRunBeside: true for a container with a static IP and MAC")
	} else {
		t.Logf("cannot run beside: %s", why)
	}

	cloneName := uniqueName(t, "static-next")
	newID, err := c.Clone(ctx, oldID, testImage(t, imageV2), cloneName)
	if err != nil {
		t.Fatal(err)
	}
	removeContainerLater(t, api, newID)
	if err := c.WaitHealthy(ctx, oldID, 0); err != nil {
		t.Fatal(err)
	}
	// A --rm container: Docker deletes it as it stops; Remove right after
	// meets that removal in progress, or nothing.
	if err := c.Stop(ctx, oldID); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, oldID); err != nil {
		t.Fatalf("Remove of a --rm container Docker removes: %v", err)
	}
	if _, err := c.Inspect(ctx, oldID); !errors.Is(err, docker.ErrContainerNotFound) {
		t.Fatalf("the --rm container after Stop and Remove: %v, want ErrContainerNotFound", err)
	}
	if err := c.Start(ctx, newID); err != nil {
		t.Fatal(err)
	}
	raw, err := api.ContainerInspect(ctx, newID)
	if err != nil {
		t.Fatal(err)
	}
	ep := raw.NetworkSettings.Networks[netName]
	if raw.HostConfig.AutoRemove || ep == nil || ep.IPAddress != ip || ep.MacAddress != mac {
		t.Fatalf("clone: AutoRemove %v, endpoint %+v: want no --rm, IP %s, MAC %s", raw.HostConfig.AutoRemove, ep, ip, mac)
	}
	// It survives its own stop.
	if err := c.Stop(ctx, newID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inspect(ctx, newID); err != nil {
		t.Fatalf("the clone after a stop: %v", err)
	}
}
