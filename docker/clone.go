package docker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/go-connections/nat"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// multiNetworkCreateAPI is the first API version whose create call accepts more than one network;
// older daemons (Docker < 25) answer "Container cannot be connected to network endpoints".
const multiNetworkCreateAPI = "1.44"

// Clone creates, but does not start, a container named name that runs image with the configuration
// of container from: environment, entrypoint and command, exposed and published ports (as configured,
// so an ephemeral host port stays ephemeral), binds, mounts and volumes (an anonymous volume is
// reused, as docker compose does), labels, networks with their aliases and static addresses, restart
// policy, healthcheck, resources, user, working directory, hostname and domain name, stop signal and
// timeout, tty and stdin, log configuration, extra hosts, capabilities, a static MAC address and the
// rest of the host configuration, but not AutoRemove (--rm): the copy is a container haroll may have
// to stop and start again (the old one of the next replacement), which Docker would delete instead.
//
// What container from merely inherited from its own image is left out, so that image's defaults
// apply instead: Docker stores a container's configuration merged with its image's, so a setting equal
// to the old image's is taken as inherited (an operator who passed exactly the image's value gets
// the new image's). The old image is inspected for this; see cloneSpec.
//
// image must be present locally (see EnsureImage), else ErrImageNotFound. It returns the new
// container's ID. moves change host ports the copy publishes (HostPortMove). A name already in use is ErrNameConflict; an unknown from is ErrContainerNotFound.
// When the daemon cannot attach several networks at create time (API < 1.44), the first network is
// attached at create and the others are connected before Clone returns; if that fails, the new
// container is removed.
func (c *Client) Clone(ctx context.Context, from string, image, name string, moves ...HostPortMove) (id string, err error) {
	err = c.bounded(ctx, 0, func(ctx context.Context) (err error) {
		id, err = c.clone(ctx, from, image, name, moves)
		return err
	})
	return id, err
}

// HostPortMove publishes on host port To what the container cloned from
// publishes on host port From: the copy of a blue/green slot's container
// listens on the idle side's port while the old one keeps the live side's.
type HostPortMove struct{ From, To int }

// apply moves the host port in s; it fails when nothing is published on
// From.
func (m HostPortMove) apply(s *createSpec) error {
	moved := false
	for port, bindings := range s.HostConfig.PortBindings {
		out := slices.Clone(bindings)
		for i, b := range out {
			if b.HostPort == strconv.Itoa(m.From) {
				out[i].HostPort, moved = strconv.Itoa(m.To), true
			}
		}
		s.HostConfig.PortBindings[port] = out
	}
	if !moved {
		return fmt.Errorf("it publishes nothing on host port %d, so its copy cannot be moved to port %d", m.From, m.To)
	}
	return nil
}

func (c *Client) clone(ctx context.Context, from string, image, name string, moves []HostPortMove) (string, error) {
	old, err := c.api.ContainerInspect(ctx, from)
	if err != nil {
		return "", containerError("clone: inspect", from, err)
	}
	oldImage, err := c.api.ImageInspect(ctx, old.Image)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("clone container %s: its image %s is gone, so its own settings cannot be told from the image's defaults: %w",
				from, old.Image, ErrImageNotFound)
		}
		return "", fmt.Errorf("clone container %s: inspect its image %s: %w", from, old.Image, err)
	}
	if _, err := c.localImageID(ctx, image); err != nil {
		return "", fmt.Errorf("clone container %s: %w (call EnsureImage first)", from, err)
	}

	spec := cloneSpec(old, oldImage.Config, image)
	for _, m := range moves {
		if err := m.apply(&spec); err != nil {
			return "", fmt.Errorf("clone container %s: %w", from, err)
		}
	}
	multi := versions.GreaterThanOrEqualTo(c.api.ClientVersion(), multiNetworkCreateAPI)
	if multi {
		spec.macOnEndpoint()
	}
	atCreate, later := spec.split(multi)

	resp, err := c.api.ContainerCreate(ctx, spec.Config, spec.HostConfig, atCreate, nil, name)
	if err != nil {
		if cerrdefs.IsConflict(err) {
			return "", fmt.Errorf("clone container %s as %s: %w (remove or rename the container holding that name)", from, name, ErrNameConflict)
		}
		return "", fmt.Errorf("clone container %s as %s on image %s: %w", from, name, image, err)
	}
	for _, netName := range sortedKeys(later) {
		if err := c.api.NetworkConnect(ctx, netName, resp.ID, later[netName]); err != nil {
			err = fmt.Errorf("clone container %s as %s: connect network %s: %w", from, name, netName, err)
			if rmErr := c.Remove(context.WithoutCancel(ctx), resp.ID); rmErr != nil {
				err = errors.Join(err, rmErr)
			}
			return "", err
		}
	}
	return resp.ID, nil
}

// createSpec is what ContainerCreate takes, networks apart.
type createSpec struct {
	Config     *container.Config
	HostConfig *container.HostConfig
	// Primary is the network named by HostConfig.NetworkMode ("" when the mode is host, none or
	// container:...); Networks holds every network to attach, Primary included.
	Primary  string
	Networks map[string]*network.EndpointSettings
}

// macOnEndpoint moves the container-wide MAC address to the primary network's endpoint, where API
// 1.44 and later take it (the SDK drops Config.MacAddress for them).
func (s createSpec) macOnEndpoint() {
	mac := s.Config.MacAddress
	if mac == "" {
		return
	}
	s.Config.MacAddress = ""
	if ep := s.Networks[s.Primary]; ep != nil && ep.MacAddress == "" {
		ep.MacAddress = mac
	}
}

// split returns the networks to attach at create and those to connect afterwards.
func (s createSpec) split(multiAtCreate bool) (*network.NetworkingConfig, map[string]*network.EndpointSettings) {
	if len(s.Networks) == 0 {
		return nil, nil
	}
	if multiAtCreate {
		return &network.NetworkingConfig{EndpointsConfig: s.Networks}, nil
	}
	atCreate := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
	later := map[string]*network.EndpointSettings{}
	for name, ep := range s.Networks {
		if name == s.Primary {
			atCreate.EndpointsConfig[name] = ep
		} else {
			later[name] = ep
		}
	}
	return atCreate, later
}

// cloneSpec is the configuration of a copy of old running image. oldImage is the configuration of
// old's image (nil when unknown: then everything is taken as set by the operator). It is pure so that
// the rules below can be tested without a daemon.
//
// Docker stores a container's Config merged with its image's: Env, Labels, ExposedPorts and Volumes
// are unions, User, WorkingDir, StopSignal, Entrypoint, Cmd and the Healthcheck fields are the image's
// unless the operator set them. Each value equal to the old image's is dropped here, so the new
// image's own value applies when the daemon merges again at create. The hostname Docker derives from
// the container ID, the short-ID network alias and other operational data are not copied either.
func cloneSpec(old container.InspectResponse, oldImage *dockerspec.DockerOCIImageConfig, image string) createSpec {
	var img dockerspec.DockerOCIImageConfig
	if oldImage != nil {
		img = *oldImage
	}
	oc := old.Config
	if oc == nil {
		oc = &container.Config{}
	}
	hc := container.HostConfig{}
	if old.ContainerJSONBase != nil && old.HostConfig != nil {
		hc = *old.HostConfig
	}
	id := ""
	if old.ContainerJSONBase != nil {
		id = old.ID
	}

	cfg := &container.Config{
		Hostname:        oc.Hostname,
		Domainname:      oc.Domainname,
		User:            unlessEqual(oc.User, img.User),
		AttachStdin:     oc.AttachStdin,
		AttachStdout:    oc.AttachStdout,
		AttachStderr:    oc.AttachStderr,
		Tty:             oc.Tty,
		OpenStdin:       oc.OpenStdin,
		StdinOnce:       oc.StdinOnce,
		Env:             withoutImageEnv(oc.Env, img.Env),
		Healthcheck:     withoutImageHealthcheck(oc.Healthcheck, img.Healthcheck),
		Image:           image,
		WorkingDir:      unlessEqual(oc.WorkingDir, img.WorkingDir),
		NetworkDisabled: oc.NetworkDisabled,
		Labels:          withoutImageLabels(oc.Labels, img.Labels),
		StopSignal:      unlessEqual(oc.StopSignal, img.StopSignal),
		// Only a MAC the operator set shows here (API < 1.44); each
		// endpoint's MacAddress is operational data, maybe generated.
		MacAddress: oc.MacAddress,
	}
	if oc.StopTimeout != nil {
		t := *oc.StopTimeout
		cfg.StopTimeout = &t
	}
	if cfg.Hostname == shortID(id) || hc.NetworkMode.IsContainer() {
		cfg.Hostname = "" // Docker's default, derived from the old ID; or the other container's
	}
	if !slices.Equal(oc.Entrypoint, img.Entrypoint) {
		// An explicit entrypoint: Docker did not inherit the image's Cmd either.
		cfg.Entrypoint = slices.Clone(oc.Entrypoint)
		cfg.Cmd = slices.Clone(oc.Cmd)
	} else if !slices.Equal(oc.Cmd, img.Cmd) {
		cfg.Cmd = slices.Clone(oc.Cmd)
	}

	cfg.ExposedPorts = nat.PortSet{}
	for p := range oc.ExposedPorts {
		_, inImage := img.ExposedPorts[string(p)]
		_, published := hc.PortBindings[p]
		if !inImage || published {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}

	hc.ContainerIDFile = "" // a client-side file of the original `docker run`
	// Docker would delete the copy when it stops: see Clone.
	hc.AutoRemove = false
	hc.Links = shortLinks(hc.Links)
	hc.Binds = slices.Clone(hc.Binds)
	hc.Mounts = slices.Clone(hc.Mounts)
	anonymous := anonymousVolumes(old, hc)
	hc.Mounts = append(hc.Mounts, anonymous...)

	cfg.Volumes = map[string]struct{}{}
	for v := range oc.Volumes {
		if _, inImage := img.Volumes[v]; inImage {
			continue
		}
		if slices.ContainsFunc(anonymous, func(m mount.Mount) bool { return m.Target == v }) {
			continue
		}
		cfg.Volumes[v] = struct{}{}
	}

	spec := createSpec{Config: cfg, HostConfig: &hc}
	spec.Primary, spec.Networks = networks(old, hc.NetworkMode, id)
	return spec
}

func unlessEqual(v, inherited string) string {
	if v == inherited {
		return ""
	}
	return v
}

// withoutImageEnv drops the entries ("K=V") the image set to the same value.
func withoutImageEnv(env, imageEnv []string) []string {
	var out []string
	for _, e := range env {
		if !slices.Contains(imageEnv, e) {
			out = append(out, e)
		}
	}
	return out
}

func withoutImageLabels(labels, imageLabels map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range labels {
		if iv, ok := imageLabels[k]; ok && iv == v {
			continue
		}
		out[k] = v
	}
	return out
}

// withoutImageHealthcheck zeroes each field equal to the image's; Docker fills zero fields from the
// image at create, field by field. nil when nothing is left.
func withoutImageHealthcheck(h, image *container.HealthConfig) *container.HealthConfig {
	if h == nil {
		return nil
	}
	out := *h
	out.Test = slices.Clone(h.Test)
	if image != nil {
		if slices.Equal(out.Test, image.Test) {
			out.Test = nil
		}
		if out.Interval == image.Interval {
			out.Interval = 0
		}
		if out.Timeout == image.Timeout {
			out.Timeout = 0
		}
		if out.StartPeriod == image.StartPeriod {
			out.StartPeriod = 0
		}
		if out.StartInterval == image.StartInterval {
			out.StartInterval = 0
		}
		if out.Retries == image.Retries {
			out.Retries = 0
		}
	}
	if len(out.Test) == 0 && out.Interval == 0 && out.Timeout == 0 && out.StartPeriod == 0 && out.StartInterval == 0 && out.Retries == 0 {
		return nil
	}
	return &out
}

// anonymousVolumes are mounts of the volumes Docker created for old (image VOLUMEs, `-v /path`), so
// that the copy keeps their data. Named volumes and binds come from HostConfig already. Containers
// using --volumes-from are left alone: their mounts cannot be told apart.
func anonymousVolumes(old container.InspectResponse, hc container.HostConfig) []mount.Mount {
	if len(hc.VolumesFrom) > 0 {
		return nil
	}
	configured := map[string]bool{}
	for _, b := range hc.Binds {
		if parts := strings.Split(b, ":"); len(parts) >= 2 {
			configured[parts[1]] = true
		}
	}
	for _, m := range hc.Mounts {
		configured[m.Target] = true
	}
	var out []mount.Mount
	for _, mp := range old.Mounts {
		if mp.Type != mount.TypeVolume || mp.Name == "" || configured[mp.Destination] {
			continue
		}
		out = append(out, mount.Mount{Type: mount.TypeVolume, Source: mp.Name, Target: mp.Destination, ReadOnly: !mp.RW})
	}
	return out
}

// shortLinks turns the links inspect reports ("/db:/web/db") back into the create form ("db:db").
func shortLinks(links []string) []string {
	var out []string
	for _, l := range links {
		name, alias, ok := strings.Cut(l, ":")
		if !ok {
			out = append(out, strings.TrimPrefix(l, "/"))
			continue
		}
		out = append(out, strings.TrimPrefix(name, "/")+":"+alias[strings.LastIndex(alias, "/")+1:])
	}
	return out
}

// networks returns the endpoints to recreate: every network of old with its configured aliases,
// static addresses, links and driver options, but not the operational data nor the short-ID alias.
func networks(old container.InspectResponse, mode container.NetworkMode, id string) (string, map[string]*network.EndpointSettings) {
	if mode.IsHost() || mode.IsNone() || mode.IsContainer() || old.NetworkSettings == nil {
		return "", nil
	}
	primary := string(mode)
	if mode.IsDefault() {
		primary = network.NetworkBridge
	}
	out := map[string]*network.EndpointSettings{}
	byID := ""
	for name, ep := range old.NetworkSettings.Networks {
		if ep == nil {
			continue
		}
		if primary != "" && ep.NetworkID != "" && strings.HasPrefix(ep.NetworkID, primary) {
			byID = name // NetworkMode may name the network by (a prefix of) its ID
		}
		es := &network.EndpointSettings{
			Links:      slices.Clone(ep.Links),
			Aliases:    userAliases(ep.Aliases, id),
			DriverOpts: maps.Clone(ep.DriverOpts),
		}
		if ip := ep.IPAMConfig; ip != nil && (ip.IPv4Address != "" || ip.IPv6Address != "" || len(ip.LinkLocalIPs) > 0) {
			c := *ip
			c.LinkLocalIPs = slices.Clone(ip.LinkLocalIPs)
			es.IPAMConfig = &c
		}
		out[name] = es
	}
	if _, ok := out[primary]; !ok {
		switch {
		case byID != "":
			primary = byID
		case len(out) > 0:
			primary = sortedKeys(out)[0]
		}
	}
	return primary, out
}

func shortID(id string) string {
	if len(id) < 12 {
		return id
	}
	return id[:12]
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
