package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// plan is what preflight learnt about one slot before anything is touched.
type plan struct {
	slot   SlotConfig
	old    docker.Container
	weight int           // original weight, restored at the end
	state  runtime.State // original administrative state
	addr   string        // HAProxy's address for the server before the swap
	// full is the slot's whole weight: weight, or the weight before a
	// canary the slot runs; final is what the slot gets once replaced
	// (full, or a share of it for a canary).
	full, final int
	canary      bool
	skip        bool // already runs the image
	// startFirst: the new container boots while the old one drains.
	startFirst bool
	// imageID is the requested image's ID on the host.
	imageID string
	// takeover: the slot is wedged, and old is the container its
	// configuration is cloned from (takeOver).
	takeover *takeover
	// track is how the HAProxy workers a reload replaces are followed.
	track tracking
	// pair: a blue/green slot (checkPair).
	pair *pairPlan
	// canaryPair: a blue/green slot that runs a canary (checkPairCanary);
	// a redeploy that is not skipped undoes it (undoPairCanary).
	canaryPair *canaryPair
}

// preflight checks every requested slot, then makes sure the image is local
// (pulling it now, before any drain: pullImage), and changes nothing. All
// problems are reported at once, wrapped in ErrPreflight. wedged, when not
// nil, is the journal entry of a slot the redeploy takes over
// (checkTakeover).
func (a *Agent) preflight(ctx context.Context, req Request, slots []SlotConfig, wedged *Entry, events func(Event)) ([]plan, error) {
	if err := a.validateImage(req.Image); err != nil {
		return nil, err
	}
	canaries, err := a.canaries()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPreflight, err)
	}
	var errs []error
	plans := make([]plan, 0, len(slots))
	cfg := loadHAProxyConfig(a.cfg.HAProxy.Config) // once for every slot
	for _, s := range slots {
		var p plan
		var err error
		switch {
		case wedged != nil && wedged.Slot == s.Name:
			p, err = a.checkTakeover(ctx, s, cfg, *wedged)
		case s.pair() && canaries[s.Name].Surge != nil:
			p, err = a.checkPairCanary(ctx, s, canaries[s.Name])
		case s.pair():
			p, err = a.checkPair(ctx, s, cfg)
		default:
			p, err = a.checkSlot(ctx, s, cfg)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %s: %w", s.Name, err))
			continue
		}
		plans = append(plans, p)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrPreflight, errors.Join(errs...))
	}
	if err := a.checkStateFiles(ctx, plans); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPreflight, err)
	}
	track, err := a.reloadTracking(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPreflight, err)
	}
	if track.mode == trackOff {
		a.log.Warn(track.why)
	}
	for i := range plans {
		p := &plans[i]
		p.track = track
		if p.canaryPair != nil {
			continue // skipped, undone or refused: no new canary (decidePairCanary)
		}
		p.full = p.weight
		if c, ok := canaries[p.slot.Name]; ok {
			p.full = c.FullWeight
		}
		p.final, p.canary = p.full, req.CanaryPercent > 0
		if p.canary && p.pair != nil && p.full == 0 {
			errs = append(errs, fmt.Errorf("slot %s: a canary of a blue/green slot whose live server %s is at weight 0 would give its new side no traffic and leave both sides out of maintenance: give the server a weight first, or redeploy the slot without a canary", p.slot.Name, p.pair.live))
			continue
		}
		if p.canary {
			p.final = CanaryWeight(p.full, req.CanaryPercent)
			if err := a.checkCanaryWeight(p.slot.Name, p.full, req.CanaryPercent, p.final); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrPreflight, errors.Join(errs...))
	}
	imageID, err := a.pullImage(ctx, req, events)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPreflight, err)
	}
	for i := range plans {
		p := &plans[i]
		p.imageID = imageID
		// A pair's canary is not replaced by its own image, even with
		// force: only a promotion or an undo ends it.
		p.skip = p.old.ImageID == imageID && (!req.Force || p.canaryPair != nil) && p.takeover == nil
		if !p.skip && p.canaryPair != nil {
			if err := decidePairCanary(*p, req.Image, imageID); err != nil {
				errs = append(errs, fmt.Errorf("slot %s: %w", p.slot.Name, err))
			}
			continue
		}
		if p.skip || p.pair != nil { // a pair's capacity never dips: min_serving is not at stake
			continue
		}
		if err := a.checkServing(ctx, p.slot); err != nil {
			errs = append(errs, fmt.Errorf("slot %s: %w", p.slot.Name, err))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrPreflight, errors.Join(errs...))
	}
	return plans, nil
}

// checkSlot checks that the slot's server and container exist and that
// HAProxy can prove a new container healthy (the server has checks), and
// chooses the slot's configured strategy. A fleet request's
// prefer_start_first needs nothing more: auto is start-first wherever the
// container can run beside its replacement, and an explicit stop-first (a
// singleton worker, a memory limit) is the operator's, which no request
// overrides.
func (a *Agent) checkSlot(ctx context.Context, s SlotConfig, cfg haproxyConfig) (plan, error) {
	p := plan{slot: s}
	srv, adm, err := a.checkServer(ctx, s, cfg)
	if err != nil {
		return p, err
	}
	if adm.State == runtime.StateMaint {
		return p, fmt.Errorf("haproxy server %s/%s is in maintenance: set it ready (`set server %s/%s state ready`) or leave the slot out", s.Backend, s.Server, s.Backend, s.Server)
	}
	old, err := a.docker.Inspect(ctx, s.Container)
	if err != nil {
		return p, err
	}
	p.old, p.weight, p.state, p.addr = old, srv.Weight, adm.State, srv.Addr
	beside, why := old.CanRunBeside()
	switch {
	case s.Strategy == StrategyStartFirst:
		if !beside {
			return p, fmt.Errorf("strategy start-first: container %s cannot run beside its replacement: %s; use stop-first or auto", s.Container, why)
		}
		p.startFirst = true
	case s.Strategy == StrategyStopFirst:
		why = "strategy is stop-first"
	default:
		p.startFirst = beside
	}
	if old.AutoRemove && !p.startFirst {
		return p, fmt.Errorf("container %s was created with --rm (AutoRemove), so Docker deletes it as soon as it stops, and it would have to stop before its replacement is proven (%s): a replacement that failed could not bring it back; recreate the container without --rm, or let it run beside its replacement (no fixed host port, static IP or MAC; strategy auto or start-first): %w",
			s.Container, why, ErrAutoRemove)
	}
	if old.Running {
		if want, err := containerAddress(old, s); err != nil {
			return p, err
		} else if want.String() != srv.Addr {
			a.log.Warn("haproxy server does not point at the slot's container", "slot", s.Name,
				"haproxy_addr", srv.Addr, "container_addr", want.String())
		}
	}
	return p, nil
}

// checkServing enforces min_serving: the slot's backend must keep that many
// other servers serving while this one is out.
func (a *Agent) checkServing(ctx context.Context, s SlotConfig) error {
	servers, err := a.haproxy.Backend(ctx, s.Backend)
	if err != nil {
		return err
	}
	serving := 0
	for _, srv := range servers {
		if srv.Server != s.Server && srv.Serving() {
			serving++
		}
	}
	if serving < a.cfg.MinServing {
		return fmt.Errorf("backend %s has %d other serving servers, min_serving is %d: %w", s.Backend, serving, a.cfg.MinServing, ErrMinServing)
	}
	return nil
}

// checkServer checks that the slot's server exists, has checks (so that
// HAProxy can prove a new container healthy), and sits in a backend whose
// persistence maintenance can move (checkPersistence); it returns how
// HAProxy sees the server.
func (a *Agent) checkServer(ctx context.Context, s SlotConfig, cfg haproxyConfig) (runtime.ServerStat, runtime.Admin, error) {
	srv, err := a.haproxy.Server(ctx, s.Backend, s.Server)
	if err != nil {
		return srv, runtime.Admin{}, fmt.Errorf("haproxy server %s/%s: %w", s.Backend, s.Server, err)
	}
	adm, err := a.haproxy.Admin(ctx, s.Backend, s.Server)
	if err != nil {
		return srv, adm, fmt.Errorf("haproxy server %s/%s: %w", s.Backend, s.Server, err)
	}
	if !adm.Checked {
		return srv, adm, fmt.Errorf("haproxy server %s/%s has no health check, so HAProxy could not prove the new container healthy: add `check` to its server line", s.Backend, s.Server)
	}
	return srv, adm, a.checkPersistence(s, cfg)
}

// checkPersistence refuses a backend whose configuration keeps pinned
// clients on a server in maintenance (`option persist`, `force-persist`):
// there, no runtime command takes a server out of every selection, so its
// container could not be stopped without losing their requests. With the
// default haproxy.config absent, or not holding the backend, the check is
// skipped with a warning; a path the operator set must hold it.
func (a *Agent) checkPersistence(s SlotConfig, cfg haproxyConfig) error {
	found, err := cfg.persistSettings(s.Backend)
	switch {
	case err != nil && cfg.path == DefaultHAProxyConfig:
		a.log.Warn("cannot check the backend for option persist or force-persist: set haproxy.config to the configuration HAProxy runs with",
			"slot", s.Name, "backend", s.Backend, "error", err)
		return nil
	case err != nil:
		return fmt.Errorf("haproxy.config: %w", err)
	case len(found) > 0:
		lines := make([]string, len(found))
		for i, f := range found {
			lines[i] = f.String()
		}
		return fmt.Errorf("backend %s keeps clients pinned to a server in maintenance (%s), so haroll cannot take a server's traffic away before it stops the container: remove `option persist` (or add `no option persist` to the backend) and the backend's `force-persist` rules: %w",
			s.Backend, strings.Join(lines, "; "), ErrPersistence)
	}
	return nil
}
