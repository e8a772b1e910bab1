package agent

import (
	"testing"

	"github.com/haroll/haroll/docker"
)

func TestContainerAddress(t *testing.T) {
	published := docker.Container{Name: "c", Ports: map[string][]docker.PortBinding{
		"8080/tcp": {{HostIP: "0.0.0.0", HostPort: 18081}, {HostIP: "::", HostPort: 18081}},
	}, Networks: map[string]docker.Endpoint{"bridge": {IP: "172.17.0.2"}}}
	onNet := docker.Container{Name: "c", Ports: map[string][]docker.PortBinding{"8080/tcp": nil},
		Networks: map[string]docker.Endpoint{"appnet": {IP: "172.30.0.5"}}}
	twoNets := docker.Container{Name: "c", Ports: map[string][]docker.PortBinding{"8080/tcp": nil},
		Networks: map[string]docker.Endpoint{"a": {IP: "172.30.0.5"}, "b": {IP: "172.31.0.5"}}}
	twoPorts := docker.Container{Name: "c", Ports: map[string][]docker.PortBinding{"8080/tcp": nil, "9090/tcp": nil}}
	for _, tc := range []struct {
		name string
		c    docker.Container
		slot SlotConfig
		want string
	}{
		{"a published port on all interfaces is reached on loopback", published, SlotConfig{}, "127.0.0.1:18081"},
		{"a named network wins over the published port", published, SlotConfig{Network: "bridge"}, "172.17.0.2:8080"},
		{"the only network's IP when nothing is published", onNet, SlotConfig{}, "172.30.0.5:8080"},
		{"a named network among several", twoNets, SlotConfig{Network: "b"}, "172.31.0.5:8080"},
		{"two networks and no choice is an error", twoNets, SlotConfig{}, ""},
		{"an unknown network is an error", onNet, SlotConfig{Network: "nope"}, ""},
		{"two exposed ports need the slot's port", twoPorts, SlotConfig{}, ""},
		{"the slot's port picks one", twoPorts, SlotConfig{Port: 9090, Network: ""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := containerAddress(tc.c, tc.slot)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %s, want an error", got)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}
