package agent

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/haroll/haroll/docker"
)

// address is where HAProxy reaches a slot's container.
type address struct {
	IP   string
	Port int
}

func (a address) String() string { return net.JoinHostPort(a.IP, strconv.Itoa(a.Port)) }

// containerAddress works out where HAProxy must send a slot's traffic, in
// this order: the container's IP on slot.Network when set; else the host
// binding of the app's port (an unspecified host IP means loopback); else the
// container's IP on its only network. The app's port is slot.Port, or the
// container's only exposed port.
func containerAddress(c docker.Container, slot SlotConfig) (address, error) {
	port := slot.Port
	if port == 0 {
		var exposed []string
		for p := range c.Ports {
			exposed = append(exposed, p)
		}
		if len(exposed) != 1 {
			sort.Strings(exposed)
			return address{}, fmt.Errorf("container %s exposes ports %v: set the slot's port to the one the app listens on", c.Name, exposed)
		}
		n, err := strconv.Atoi(strings.TrimSuffix(exposed[0], "/tcp"))
		if err != nil {
			return address{}, fmt.Errorf("container %s exposes %s, not a TCP port: set the slot's port", c.Name, exposed[0])
		}
		port = n
	}
	if slot.Network != "" {
		ep, ok := c.Networks[slot.Network]
		if !ok || ep.IP == "" {
			return address{}, fmt.Errorf("container %s has no address on network %q (networks: %v)", c.Name, slot.Network, networkNames(c))
		}
		return address{IP: ep.IP, Port: port}, nil
	}
	for _, b := range c.Ports[fmt.Sprintf("%d/tcp", port)] {
		if b.HostPort == 0 {
			continue
		}
		ip := b.HostIP
		switch ip {
		case "", "0.0.0.0":
			ip = "127.0.0.1"
		case "::":
			continue // the IPv4 binding of the same port comes too
		}
		return address{IP: ip, Port: b.HostPort}, nil
	}
	var ips []string
	for _, ep := range c.Networks {
		if ep.IP != "" {
			ips = append(ips, ep.IP)
		}
	}
	if len(ips) == 1 {
		return address{IP: ips[0], Port: port}, nil
	}
	return address{}, fmt.Errorf("container %s publishes no host port for %d/tcp and is on %d networks: publish the port or set the slot's network", c.Name, port, len(ips))
}

func networkNames(c docker.Container) []string {
	var names []string
	for n := range c.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
