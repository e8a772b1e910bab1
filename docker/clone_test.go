package docker

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const oldID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// oldImageConfig is the configuration of the image the old container was created from.
func oldImageConfig() *dockerspec.DockerOCIImageConfig {
	return &dockerspec.DockerOCIImageConfig{
		ImageConfig: ocispec.ImageConfig{
			User:         "app",
			ExposedPorts: map[string]struct{}{"8080/tcp": {}, "9090/tcp": {}},
			Env:          []string{"PATH=/usr/bin", "VERSION=v1", "MODE=prod"},
			Entrypoint:   []string{"/app"},
			Cmd:          []string{"serve"},
			Volumes:      map[string]struct{}{"/cache": {}},
			WorkingDir:   "/srv",
			Labels:       map[string]string{"org.example.version": "v1", "tier": "web"},
			StopSignal:   "SIGTERM",
		},
		DockerOCIImageConfigExt: dockerspec.DockerOCIImageConfigExt{
			Healthcheck: &dockerspec.HealthcheckConfig{Test: []string{"CMD", "/app", "-check"}, Interval: 500 * time.Millisecond, Retries: 3},
		},
	}
}

// oldContainer is what inspect returns for a container created from oldImageConfig with
// `docker run -e EXTRA=1 -e MODE=debug -l app=web -p 127.0.0.1::8080 --network front --network-alias web`:
// Docker merged the image's configuration into it.
func oldContainer() container.InspectResponse {
	stop := 7
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			ID:    oldID,
			Name:  "/web",
			Image: "sha256:old",
			HostConfig: &container.HostConfig{
				NetworkMode:     "front",
				PortBindings:    nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: ""}}},
				RestartPolicy:   container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
				Resources:       container.Resources{Memory: 64 << 20, NanoCPUs: 5e8},
				Binds:           []string{"/etc/web:/etc/web:ro"},
				ExtraHosts:      []string{"db:10.0.0.9"},
				CapAdd:          []string{"NET_ADMIN"},
				LogConfig:       container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "1m"}},
				ContainerIDFile: "/tmp/cid",
			},
		},
		Config: &container.Config{
			Hostname:     oldID[:12],
			User:         "app",
			ExposedPorts: nat.PortSet{"8080/tcp": {}, "9090/tcp": {}},
			Env:          []string{"PATH=/usr/bin", "VERSION=v1", "MODE=debug", "EXTRA=1"},
			Entrypoint:   []string{"/app"},
			Cmd:          []string{"serve"},
			Volumes:      map[string]struct{}{"/cache": {}},
			WorkingDir:   "/srv",
			Labels:       map[string]string{"org.example.version": "v1", "tier": "web", "app": "web"},
			StopSignal:   "SIGTERM",
			StopTimeout:  &stop,
			Healthcheck:  &container.HealthConfig{Test: []string{"CMD", "/app", "-check"}, Interval: 500 * time.Millisecond, Retries: 3},
			Image:        "registry.example/web:v1",
		},
		Mounts: []container.MountPoint{
			{Type: mount.TypeBind, Source: "/etc/web", Destination: "/etc/web"},
			{Type: mount.TypeVolume, Name: "f00d", Destination: "/cache", RW: true},
		},
		NetworkSettings: &container.NetworkSettings{
			Networks: map[string]*network.EndpointSettings{
				"front": {
					Aliases:    []string{"web", oldID[:12]},
					NetworkID:  "n1",
					IPAddress:  "172.18.0.5",
					MacAddress: "02:42:ac:12:00:05",
				},
			},
		},
	}
}

func TestACloneDropsWhatTheOldContainerInheritedFromItsImage(t *testing.T) {
	spec := cloneSpec(oldContainer(), oldImageConfig(), "registry.example/web:v2")
	cfg := spec.Config

	if cfg.Image != "registry.example/web:v2" {
		t.Errorf("Image = %q", cfg.Image)
	}
	if want := []string{"MODE=debug", "EXTRA=1"}; !slices.Equal(cfg.Env, want) {
		t.Errorf("Env = %q, want only the operator's %q", cfg.Env, want)
	}
	if want := map[string]string{"app": "web"}; !maps.Equal(cfg.Labels, want) {
		t.Errorf("Labels = %v, want %v", cfg.Labels, want)
	}
	if cfg.Entrypoint != nil || cfg.Cmd != nil {
		t.Errorf("Entrypoint %q, Cmd %q: want both left to the new image", cfg.Entrypoint, cfg.Cmd)
	}
	if cfg.Healthcheck != nil {
		t.Errorf("Healthcheck = %+v, want the new image's (nil)", cfg.Healthcheck)
	}
	if cfg.User != "" || cfg.WorkingDir != "" || cfg.StopSignal != "" {
		t.Errorf("User %q, WorkingDir %q, StopSignal %q: want the new image's", cfg.User, cfg.WorkingDir, cfg.StopSignal)
	}
	if cfg.Hostname != "" {
		t.Errorf("Hostname = %q: the old container's ID-derived default was copied", cfg.Hostname)
	}
	if _, ok := cfg.ExposedPorts["9090/tcp"]; ok {
		t.Errorf("ExposedPorts %v: 9090 came from the old image only", cfg.ExposedPorts)
	}
	if _, ok := cfg.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("ExposedPorts %v: a published port must stay exposed", cfg.ExposedPorts)
	}
	if cfg.StopTimeout == nil || *cfg.StopTimeout != 7 {
		t.Errorf("StopTimeout = %v, want 7", cfg.StopTimeout)
	}
}

func TestACloneKeepsTheOperatorsHostConfiguration(t *testing.T) {
	old := oldContainer()
	spec := cloneSpec(old, oldImageConfig(), "web:v2")
	hc := spec.HostConfig

	if b := hc.PortBindings["8080/tcp"]; len(b) != 1 || b[0].HostPort != "" || b[0].HostIP != "127.0.0.1" {
		t.Errorf("PortBindings = %v, want the ephemeral binding as configured", hc.PortBindings)
	}
	if hc.RestartPolicy.Name != container.RestartPolicyUnlessStopped || hc.Memory != 64<<20 || hc.NanoCPUs != 5e8 {
		t.Errorf("RestartPolicy %v, Memory %d, NanoCPUs %d: not kept", hc.RestartPolicy, hc.Memory, hc.NanoCPUs)
	}
	if !slices.Equal(hc.Binds, old.HostConfig.Binds) || !slices.Equal(hc.ExtraHosts, old.HostConfig.ExtraHosts) || !slices.Equal(hc.CapAdd, old.HostConfig.CapAdd) {
		t.Errorf("Binds %q, ExtraHosts %q, CapAdd %q: not kept", hc.Binds, hc.ExtraHosts, hc.CapAdd)
	}
	if hc.LogConfig.Config["max-size"] != "1m" {
		t.Errorf("LogConfig = %+v", hc.LogConfig)
	}
	if hc.ContainerIDFile != "" {
		t.Errorf("ContainerIDFile = %q, want none", hc.ContainerIDFile)
	}
	if old.HostConfig.ContainerIDFile != "/tmp/cid" || len(old.HostConfig.Mounts) != 0 {
		t.Errorf("cloneSpec modified its input: %+v", old.HostConfig)
	}
}

func TestACloneReusesTheOldContainersAnonymousVolumes(t *testing.T) {
	spec := cloneSpec(oldContainer(), oldImageConfig(), "web:v2")

	want := mount.Mount{Type: mount.TypeVolume, Source: "f00d", Target: "/cache"}
	if len(spec.HostConfig.Mounts) != 1 || spec.HostConfig.Mounts[0] != want {
		t.Errorf("Mounts = %+v, want %+v", spec.HostConfig.Mounts, want)
	}
	if len(spec.Config.Volumes) != 0 {
		t.Errorf("Volumes = %v, want none (the image's, and the reused one)", spec.Config.Volumes)
	}
}

func TestACloneJoinsTheOldNetworksWithTheOperatorsAliasesOnly(t *testing.T) {
	old := oldContainer()
	old.NetworkSettings.Networks["back"] = &network.EndpointSettings{
		Aliases:    []string{oldID[:12], "web-back"},
		IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.9.0.5"},
		NetworkID:  "n2",
	}
	spec := cloneSpec(old, oldImageConfig(), "web:v2")

	if spec.Primary != "front" {
		t.Errorf("Primary = %q, want the NetworkMode's front", spec.Primary)
	}
	front, back := spec.Networks["front"], spec.Networks["back"]
	if front == nil || !slices.Equal(front.Aliases, []string{"web"}) || front.IPAddress != "" || front.MacAddress != "" {
		t.Errorf("front endpoint = %+v, want alias web and no operational data", front)
	}
	if back == nil || !slices.Equal(back.Aliases, []string{"web-back"}) || back.IPAMConfig == nil || back.IPAMConfig.IPv4Address != "10.9.0.5" {
		t.Errorf("back endpoint = %+v, want alias web-back and the static address", back)
	}

	atCreate, later := spec.split(false)
	if len(atCreate.EndpointsConfig) != 1 || atCreate.EndpointsConfig["front"] == nil || len(later) != 1 || later["back"] == nil {
		t.Errorf("split(old API) = %v, %v: want front at create, back connected later", atCreate.EndpointsConfig, later)
	}
	atCreate, later = spec.split(true)
	if len(atCreate.EndpointsConfig) != 2 || len(later) != 0 {
		t.Errorf("split(API 1.44) = %v, %v: want both at create", atCreate.EndpointsConfig, later)
	}
}

func TestACloneOfAHostNetworkedContainerSetsNoEndpoints(t *testing.T) {
	old := oldContainer()
	old.HostConfig.NetworkMode = "host"
	old.NetworkSettings.Networks = map[string]*network.EndpointSettings{"host": {NetworkID: "h"}}
	spec := cloneSpec(old, oldImageConfig(), "web:v2")

	if atCreate, later := spec.split(false); atCreate != nil || later != nil {
		t.Errorf("split = %v, %v, want no networking config", atCreate, later)
	}
}

func TestACloneKeepsSettingsTheOperatorChoseOverTheImages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*container.Config)
		check  func(*testing.T, *container.Config)
	}{
		{
			"an explicit command",
			func(c *container.Config) { c.Cmd = []string{"serve", "--debug"} },
			func(t *testing.T, c *container.Config) {
				if c.Entrypoint != nil || !slices.Equal(c.Cmd, []string{"serve", "--debug"}) {
					t.Errorf("Entrypoint %q, Cmd %q", c.Entrypoint, c.Cmd)
				}
			},
		},
		{
			// With --entrypoint Docker does not inherit the image's Cmd: the copy must not either.
			"an explicit entrypoint without command",
			func(c *container.Config) { c.Entrypoint = []string{"/other"}; c.Cmd = nil },
			func(t *testing.T, c *container.Config) {
				if !slices.Equal(c.Entrypoint, []string{"/other"}) || len(c.Cmd) != 0 {
					t.Errorf("Entrypoint %q, Cmd %q", c.Entrypoint, c.Cmd)
				}
			},
		},
		{
			"a healthcheck interval only",
			func(c *container.Config) { c.Healthcheck.Interval = 2 * time.Second },
			func(t *testing.T, c *container.Config) {
				if h := c.Healthcheck; h == nil || h.Interval != 2*time.Second || h.Test != nil || h.Retries != 0 {
					t.Errorf("Healthcheck = %+v, want only the interval (the rest from the new image)", h)
				}
			},
		},
		{
			"a disabled healthcheck",
			func(c *container.Config) { c.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}} },
			func(t *testing.T, c *container.Config) {
				if h := c.Healthcheck; h == nil || !slices.Equal(h.Test, []string{"NONE"}) {
					t.Errorf("Healthcheck = %+v, want NONE", h)
				}
			},
		},
		{
			"user, workdir, hostname, stop signal and an overridden label",
			func(c *container.Config) {
				c.User, c.WorkingDir, c.Hostname, c.StopSignal = "root", "/tmp", "web-1", "SIGQUIT"
				c.Labels["tier"] = "edge"
			},
			func(t *testing.T, c *container.Config) {
				if c.User != "root" || c.WorkingDir != "/tmp" || c.Hostname != "web-1" || c.StopSignal != "SIGQUIT" || c.Labels["tier"] != "edge" {
					t.Errorf("got User %q, WorkingDir %q, Hostname %q, StopSignal %q, Labels %v", c.User, c.WorkingDir, c.Hostname, c.StopSignal, c.Labels)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := oldContainer()
			tc.change(old.Config)
			tc.check(t, cloneSpec(old, oldImageConfig(), "web:v2").Config)
		})
	}
}

func TestACloneWithoutTheOldImageKeepsEverything(t *testing.T) {
	spec := cloneSpec(oldContainer(), nil, "web:v2")

	if len(spec.Config.Env) != 4 || !slices.Equal(spec.Config.Cmd, []string{"serve"}) || spec.Config.Healthcheck == nil {
		t.Errorf("Config = %+v", spec.Config)
	}
}

func TestLinksAreTurnedBackIntoTheirCreateForm(t *testing.T) {
	got := shortLinks([]string{"/db:/web/db", "/cache:/web/c"})
	if want := []string{"db:db", "cache:c"}; !slices.Equal(got, want) {
		t.Fatalf("shortLinks = %q, want %q", got, want)
	}
}

func TestACloneKeepsAStaticMACAndIsNeverAutoRemoved(t *testing.T) {
	old := oldContainer()
	old.Config.MacAddress = "02:42:0a:d5:07:0b"
	old.HostConfig.AutoRemove = true
	// Operational: the MAC the daemon generated for the second network.
	old.NetworkSettings.Networks["back"] = &network.EndpointSettings{MacAddress: "02:42:ac:12:00:05", NetworkID: "n2"}
	spec := cloneSpec(old, oldImageConfig(), "web:v2")

	if spec.HostConfig.AutoRemove {
		t.Error("the clone is --rm: Docker would delete it when haroll stops it")
	}
	if spec.Config.MacAddress != "02:42:0a:d5:07:0b" {
		t.Errorf("Config.MacAddress = %q, want the old container's static MAC", spec.Config.MacAddress)
	}
	for name, ep := range spec.Networks {
		if ep.MacAddress != "" {
			t.Errorf("endpoint %s MacAddress = %q, want none for API < 1.44", name, ep.MacAddress)
		}
	}

	// API 1.44 and later take the MAC on the primary endpoint only.
	spec.macOnEndpoint()
	if spec.Config.MacAddress != "" || spec.Networks["front"].MacAddress != "02:42:0a:d5:07:0b" || spec.Networks["back"].MacAddress != "" {
		t.Errorf("for API 1.44: Config.MacAddress %q, front %q, back %q; want the MAC on front only",
			spec.Config.MacAddress, spec.Networks["front"].MacAddress, spec.Networks["back"].MacAddress)
	}
}

func TestAHostPortMovePublishesTheCopyOnTheIdleSidesPort(t *testing.T) {
	spec := createSpec{HostConfig: &container.HostConfig{PortBindings: nat.PortMap{
		"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "18081"}, {HostIP: "::1", HostPort: "18081"}},
		"9090/tcp": {{HostIP: "127.0.0.1", HostPort: "19090"}},
	}}}
	old := spec.HostConfig.PortBindings["8080/tcp"]
	if err := (HostPortMove{From: 18081, To: 18181}).apply(&spec); err != nil {
		t.Fatal(err)
	}
	for _, b := range spec.HostConfig.PortBindings["8080/tcp"] {
		if b.HostPort != "18181" {
			t.Errorf("8080/tcp published on %s:%s, want 18181", b.HostIP, b.HostPort)
		}
	}
	if b := spec.HostConfig.PortBindings["9090/tcp"]; b[0].HostPort != "19090" {
		t.Errorf("9090/tcp moved too: %v", b)
	}
	if old[0].HostPort != "18081" {
		t.Error("the old container's bindings were changed in place")
	}
	if err := (HostPortMove{From: 1, To: 2}).apply(&spec); err == nil {
		t.Error("a move of a port the container does not publish: want an error")
	}
}
