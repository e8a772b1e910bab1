package docker

import (
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
)

func TestInspectReportsWhatTheAgentNeeds(t *testing.T) {
	resp := oldContainer()
	resp.State = &container.State{Running: true, Health: &container.Health{Status: container.Healthy}}
	resp.NetworkSettings.Ports = nat.PortMap{
		"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "49153"}},
		"9090/tcp": nil, // exposed, not published
	}

	got := fromInspect(resp)

	if got.ID != oldID || got.Name != "web" || got.Image != "registry.example/web:v1" || got.ImageID != "sha256:old" {
		t.Errorf("identity = %q %q %q %q", got.ID, got.Name, got.Image, got.ImageID)
	}
	if !got.Running || got.Health != "healthy" || !got.HasHealthcheck {
		t.Errorf("Running %v, Health %q, HasHealthcheck %v", got.Running, got.Health, got.HasHealthcheck)
	}
	if ep := got.Networks["front"]; ep.IP != "172.18.0.5" || !slices.Equal(ep.Aliases, []string{"web"}) {
		t.Errorf("Networks = %+v, want front at 172.18.0.5 with alias web only", got.Networks)
	}
	if want := []PortBinding{{HostIP: "127.0.0.1", HostPort: 49153}}; !slices.Equal(got.Ports["8080/tcp"], want) || len(got.Ports) != 1 {
		t.Errorf("Ports = %v, want 8080/tcp -> %v only", got.Ports, want)
	}
	if got.StopTimeout == nil || *got.StopTimeout != 7 || got.StopSignal != "SIGTERM" || got.Labels["app"] != "web" {
		t.Errorf("StopTimeout %v, StopSignal %q, Labels %v", got.StopTimeout, got.StopSignal, got.Labels)
	}
}

func TestHostPortPrefersTheIPv4Binding(t *testing.T) {
	c := Container{Ports: map[string][]PortBinding{
		"8080/tcp": {{HostIP: "::", HostPort: 32770}, {HostIP: "0.0.0.0", HostPort: 32770}},
		"9090/tcp": {{HostIP: "::1", HostPort: 40000}},
	}}
	for _, tc := range []struct {
		port   string
		want   PortBinding
		wantOK bool
	}{
		{"8080/tcp", PortBinding{HostIP: "0.0.0.0", HostPort: 32770}, true},
		{"9090/tcp", PortBinding{HostIP: "::1", HostPort: 40000}, true},
		{"7070/tcp", PortBinding{}, false},
	} {
		if got, ok := c.HostPort(tc.port); got != tc.want || ok != tc.wantOK {
			t.Errorf("HostPort(%s) = %v, %v; want %v, %v", tc.port, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestCanRunBesideNeedsNoFixedHostPortAndItsOwnNetworkStack(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bindings nat.PortMap
		mode     string
		want     bool
		why      string
	}{
		{"ephemeral port", nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: ""}}}, "bridge", true, ""},
		{"port 0", nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "0"}}}, "bridge", true, ""},
		{"user network, nothing published", nil, "front", true, ""},
		{"fixed port", nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "18081"}}}, "bridge", false, "127.0.0.1:18081->8080/tcp"},
		{"host network", nil, "host", false, "network mode is host"},
		{"another container's network", nil, "container:abc", false, "network mode is container:abc"},
	} {
		resp := oldContainer()
		resp.HostConfig.PortBindings = tc.bindings
		resp.HostConfig.NetworkMode = container.NetworkMode(tc.mode)
		ok, why := fromInspect(resp).CanRunBeside()
		if ok != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%s: CanRunBeside() = %v, %q; want %v, containing %q", tc.name, ok, why, tc.want, tc.why)
		}
	}
}
