package docker

import (
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
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
	if got.AutoRemove || got.MacAddress != "" || len(got.StaticAddresses) != 0 {
		t.Errorf("AutoRemove %v, MacAddress %q, StaticAddresses %v: want none", got.AutoRemove, got.MacAddress, got.StaticAddresses)
	}
	resp.HostConfig.AutoRemove = true
	if !fromInspect(resp).AutoRemove {
		t.Error("AutoRemove not reported for a --rm container")
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
		{"static IPv4 address", nil, "static-ip", false, "static IP addresses (10.213.7.11 on front)"},
		{"static IPv6 address", nil, "static-ip6", false, "static IP addresses (fd00:213::11 on front)"},
		{"static MAC address", nil, "static-mac", false, "static MAC address (02:42:0a:d5:07:0b)"},
	} {
		resp := oldContainer()
		resp.HostConfig.PortBindings = tc.bindings
		resp.HostConfig.NetworkMode = container.NetworkMode(tc.mode)
		switch tc.mode {
		case "static-ip":
			resp.NetworkSettings.Networks["front"].IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: "10.213.7.11"}
		case "static-ip6":
			resp.NetworkSettings.Networks["front"].IPAMConfig = &network.EndpointIPAMConfig{IPv6Address: "fd00:213::11"}
		case "static-mac":
			resp.Config.MacAddress = "02:42:0a:d5:07:0b"
		}
		if strings.HasPrefix(tc.mode, "static") {
			resp.HostConfig.NetworkMode = "front"
		}
		ok, why := fromInspect(resp).CanRunBeside()
		if ok != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%s: CanRunBeside() = %v, %q; want %v, containing %q", tc.name, ok, why, tc.want, tc.why)
		}
	}
}
