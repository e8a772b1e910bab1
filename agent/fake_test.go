package agent

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// world is a fake host: an HAProxy whose checks pass for an address where a
// healthy container listens, and a Docker engine holding containers.
type world struct {
	mu      sync.Mutex
	servers map[string]*fakeServer // "backend/server"
	ctrs    map[string]*docker.Container
	images  map[string]string    // ref -> image ID
	pulls   map[string]*fakePull // ref -> how a pull of it goes
	broken  map[string]bool      // image ID -> never healthy
	calls   []string             // mutating calls, in order
	fail    map[string]error     // method -> error to return
	nextID  int
	nextPrt int
	// ephemeral: new containers get a new host port, like `-p 8080` does.
	ephemeral bool
	// sessions: polls a drained server keeps its sessions for.
	sessions int
	// crashBefore: the first mutating call starting with it panics with
	// errCrash before it acts, as if the process died there.
	crashBefore string
	// pid+1 is the HAProxy worker's pid; a test bumps it to fake a reload.
	pid int
	// owner is the process serving the stats socket (SocketOwner); 0 means
	// the worker itself, as HAProxy without master-worker mode; -1 one the
	// kernel cannot name here (HAProxy in a container).
	owner int
	// haproxyDown and dockerDown, when set, are what every HAProxy or Docker
	// call returns: the socket is gone, the daemon restarts.
	haproxyDown, dockerDown error
	// refused counts the calls an outage refused (record's).
	refused int
	// startIntervals are the start intervals WaitHealthy was given, in order.
	startIntervals []time.Duration
	// pinned: clients pinned to a server (a cookie, a stick table) keep
	// coming while it is not in maintenance, so its sessions never end
	// there, at weight 0 or DRAIN alike, as in HAProxy.
	pinned bool
	// vetted are the containers HAProxy may send requests to: the first
	// ones, and each one a server saw pass rise checks from a forced health
	// of 0 while pointing at it.
	vetted map[string]bool
	// stopGrace, when set, makes a stop take that long: Docker sends the
	// stop signal at once and the container serves on, healthy, until it
	// exits, whether or not the Stop call is still waiting. onSignal runs
	// (once) right after a stop signal is sent.
	stopGrace time.Duration
	onSignal  func()
	exitAt    map[string]time.Time // container ID -> end of its grace
	// afterCall, when set, runs (under mu) after each mutating call the
	// fake has accepted, before it acts.
	afterCall func(call string)
	// beforePoll, when set, runs (under mu) at each Server call, before the
	// poll's health check.
	beforePoll func(server *fakeServer)
	// violations are what haroll must never do, as the fake saw it: a
	// container stopped while a server could select it or had sessions on
	// it, a container reachable through HAProxy before its gate.
	violations []string
}

// selectable reports whether HAProxy may send s a request, by balancing
// or by persistence: not in maintenance and up by its checks.
func (s *fakeServer) selectable() bool {
	return s.admin.State != runtime.StateMaint && s.stat.CheckHealth >= s.stat.CheckRise
}

// reap stops the containers whose shutdown grace is over.
func (w *world) reap() {
	now := time.Now()
	for id, at := range w.exitAt {
		if !now.Before(at) {
			if c := w.ctrs[id]; c != nil {
				c.Running = false
			}
			delete(w.exitAt, id)
		}
	}
}

// containerAt returns the running container that listens at addr.
func (w *world) containerAt(addr string) *docker.Container {
	w.reap()
	for _, c := range w.ctrs {
		if !c.Running {
			continue
		}
		for _, b := range c.Ports["8080/tcp"] {
			if fmt.Sprintf("127.0.0.1:%d", b.HostPort) == addr {
				return c
			}
		}
	}
	return nil
}

// checkExposure records a violation for every server that could send a
// request to a container not vetted yet.
func (w *world) checkExposure() {
	for _, s := range w.servers {
		if !s.selectable() {
			continue
		}
		if c := w.containerAt(s.stat.Addr); c != nil && !w.vetted[c.ID] {
			w.violations = append(w.violations, fmt.Sprintf("container %s (%s) selectable by %s/%s (%s, health %d) before its gate, after %v",
				c.Name, c.Image, s.stat.Backend, s.stat.Server, s.admin.State, s.stat.CheckHealth, w.calls))
		}
	}
}

// checkStop records a violation when the container id is stopped while a
// server that points at it could select it or has sessions on it.
func (w *world) checkStop(id string) {
	c := w.byName(id)
	if c == nil || !c.Running {
		return
	}
	for _, s := range w.servers {
		if w.containerAt(s.stat.Addr) != c {
			continue
		}
		if s.admin.State != runtime.StateMaint || s.left > 0 {
			w.violations = append(w.violations, fmt.Sprintf("container %s stopped while %s/%s is %s with %d sessions, after %v",
				c.Name, s.stat.Backend, s.stat.Server, s.admin.State, s.left, w.calls))
		}
	}
}

// safetyViolations returns what checkExposure and checkStop saw.
func (w *world) safetyViolations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.violations...)
}

// restartHAProxy ends an outage as a restart does: a new process, every
// server back at its configured weight and ready state.
func (w *world) restartHAProxy(weights map[string]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.haproxyDown = nil
	w.pid += 1000
	w.sessions = 0 // a restart ends every session
	for name, weight := range weights {
		s := w.servers["app/"+name]
		s.stat.Weight, s.stat.Scur, s.admin.State, s.left = weight, 0, runtime.StateReady, 0
		if s.stat.CheckHealth < s.stat.CheckRise { // a new process starts its servers UP
			s.stat.CheckHealth = s.stat.CheckRise
		}
	}
}

// failing makes method fail with err from now on (nil: succeed again).
func (w *world) failing(method string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		delete(w.fail, method)
		return
	}
	w.fail[method] = err
}

// setDown starts (err != nil) or ends an outage of HAProxy or Docker.
// refusedCalls is how many calls an outage refused so far.
func (w *world) refusedCalls() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.refused
}

func (w *world) setDown(which *error, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	*which = err
}

// errCrash is the panic value of a simulated process death.
var errCrash = fmt.Errorf("simulated crash")

type fakeServer struct {
	stat  runtime.ServerStat
	admin runtime.Admin
	left  int // sessions left once drained
	// fromZero: the health was forced to 0 and has not been full since,
	// so reaching full vets the container the server points at.
	fromZero bool
	// weight and addr are the server's in the configuration file.
	weight int
	addr   string
}

// reload makes HAProxy a new worker (pid, which must not be a live
// process) that knows only the configuration file: every server ready at
// its configured weight and address, UP at once with no check run.
func (w *world) reload(pid int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pid = pid - 1
	for _, s := range w.servers {
		if s.weight == 0 {
			continue // not a slot's server
		}
		s.admin.State, s.stat.Weight, s.stat.Addr = runtime.StateReady, s.weight, s.addr
		s.stat.CheckHealth, s.fromZero = max(s.stat.CheckHealth, s.stat.CheckRise), false
	}
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{servers: map[string]*fakeServer{}, ctrs: map[string]*docker.Container{},
		images: map[string]string{"app:v1": "sha256:v1", "app:v2": "sha256:v2", "app:broken": "sha256:broken"},
		broken: map[string]bool{"sha256:broken": true}, fail: map[string]error{}, nextPrt: 20000, vetted: map[string]bool{},
		exitAt: map[string]time.Time{}}
	// A server haroll does not manage keeps the backend serving (min_serving).
	w.servers["app/other"] = &fakeServer{stat: runtime.ServerStat{Backend: "app", Server: "other", Status: "no check", Weight: 1}}
	return w
}

// addSlot adds a server at weight w and a running app:v1 container behind it.
func (w *world) addSlot(name string, weight int) SlotConfig {
	w.nextPrt++
	port := w.nextPrt
	id := w.newID()
	// A fixed host port, so the default strategy is stop-first; startFirst
	// makes the slot's container publish an ephemeral one.
	w.vetted[id] = true
	w.ctrs[id] = &docker.Container{ID: id, Name: name, Image: "app:v1", ImageID: "sha256:v1", Running: true,
		Ports:          map[string][]docker.PortBinding{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: port}}},
		FixedHostPorts: []string{fmt.Sprintf("127.0.0.1:%d->8080/tcp", port)}}
	srv := "srv-" + name
	w.servers["app/"+srv] = &fakeServer{weight: weight, addr: fmt.Sprintf("127.0.0.1:%d", port),
		stat:  runtime.ServerStat{Backend: "app", Server: srv, Status: "UP", Weight: weight, CheckStatus: "L7OK", CheckHealth: 3, CheckRise: 2, CheckFall: 2, Addr: fmt.Sprintf("127.0.0.1:%d", port), Checked: true},
		admin: runtime.Admin{State: runtime.StateReady, Checked: true},
	}
	return SlotConfig{Name: name, Backend: "app", Server: srv, Container: name, Port: 8080}
}

// startFirst makes the world's containers publish ephemeral ports, so that
// an old and a new one can run side by side (strategy auto: start-first).
func (w *world) startFirst() {
	w.ephemeral = true
	for _, c := range w.ctrs {
		c.FixedHostPorts = nil
	}
}

func (w *world) newID() string {
	w.nextID++
	return fmt.Sprintf("%064d", w.nextID)
}

func (w *world) record(format string, args ...any) error {
	call := fmt.Sprintf(format, args...)
	if w.crashBefore != "" && strings.HasPrefix(call, w.crashBefore) {
		w.crashBefore = ""
		panic(errCrash)
	}
	verb := strings.Fields(call)[0]
	if down := w.down(verb); down != nil {
		w.refused++
		return down
	}
	w.calls = append(w.calls, call)
	if w.afterCall != nil {
		w.afterCall(call)
	}
	return w.fail[verb]
}

// down returns the outage error of the side method belongs to, if any.
func (w *world) down(method string) error {
	switch method {
	case "Server", "Backend", "Admin", "SetWeight", "SetState", "SetAddr", "ForceHealthDown", "ShutdownSessions", "Info", "SocketOwner":
		return w.haproxyDown
	}
	return w.dockerDown
}

// healthyAt reports whether a running, non-broken container answers on addr.
func (w *world) healthyAt(addr string) bool {
	w.reap()
	for _, c := range w.ctrs {
		if !c.Running || w.broken[c.ImageID] {
			continue
		}
		for _, b := range c.Ports["8080/tcp"] {
			if fmt.Sprintf("127.0.0.1:%d", b.HostPort) == addr {
				return true
			}
		}
	}
	return false
}

func (w *world) byName(name string) *docker.Container {
	w.reap()
	for _, c := range w.ctrs {
		if c.Name == name || c.ID == name {
			return c
		}
	}
	return nil
}

// --- HAProxy ---

func (w *world) server(backend, server string) (*fakeServer, error) {
	s, ok := w.servers[backend+"/"+server]
	if !ok {
		return nil, fmt.Errorf("server %s/%s: %w", backend, server, runtime.ErrNoSuchServer)
	}
	return s, nil
}

func (w *world) Server(ctx context.Context, backend, server string) (runtime.ServerStat, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := cmp.Or(w.haproxyDown, w.fail["Server"]); err != nil {
		return runtime.ServerStat{}, err
	}
	s, err := w.server(backend, server)
	if err != nil {
		return runtime.ServerStat{}, err
	}
	if w.beforePoll != nil {
		w.beforePoll(s)
	}
	defer w.checkExposure()
	// Each poll is one health check of whatever listens at the address;
	// HAProxy pauses the checks of a server in maintenance.
	full := s.stat.CheckRise + s.stat.CheckFall - 1
	maint := s.admin.State == runtime.StateMaint
	switch {
	case maint:
	case w.healthyAt(s.stat.Addr):
		s.stat.CheckStatus = "L7OK"
		if s.stat.CheckHealth < full {
			s.stat.CheckHealth++
		}
		// HAProxy calls the server UP at rise successes from a forced 0:
		// from then on it may send it a request (at weight 0, a pinned one).
		if s.stat.CheckHealth >= s.stat.CheckRise && s.fromZero {
			s.fromZero = false
			if c := w.containerAt(s.stat.Addr); c != nil {
				w.vetted[c.ID] = true
			}
		}
	default:
		s.stat.CheckStatus = "L4CON"
		if s.stat.CheckHealth > 0 {
			s.stat.CheckHealth--
		}
	}
	switch {
	case maint:
		s.stat.Status = "MAINT"
	case s.stat.CheckHealth >= s.stat.CheckRise && s.admin.State == runtime.StateDrain:
		s.stat.Status = "DRAIN"
	case s.stat.CheckHealth >= s.stat.CheckRise:
		s.stat.Status = "UP"
	default:
		s.stat.Status = "DOWN"
	}
	if s.stat.Weight == 0 || s.admin.State != runtime.StateReady {
		if s.left > 0 && (maint || !w.pinned) {
			s.left--
		}
		s.stat.Scur = s.left
	}
	return s.stat, nil
}

func (w *world) Backend(ctx context.Context, backend string) ([]runtime.ServerStat, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.haproxyDown != nil {
		return nil, w.haproxyDown
	}
	var out []runtime.ServerStat
	for _, s := range w.servers {
		if s.stat.Backend == backend {
			out = append(out, s.stat)
		}
	}
	if len(out) == 0 {
		return nil, runtime.ErrNoSuchBackend
	}
	return out, nil
}

func (w *world) Admin(ctx context.Context, backend, server string) (runtime.Admin, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.haproxyDown != nil {
		return runtime.Admin{}, w.haproxyDown
	}
	s, err := w.server(backend, server)
	if err != nil {
		return runtime.Admin{}, err
	}
	return s.admin, nil
}

func (w *world) SetWeight(ctx context.Context, backend, server string, weight int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.record("SetWeight %s/%s %d", backend, server, weight); err != nil {
		return err
	}
	s, err := w.server(backend, server)
	if err != nil {
		return err
	}
	if weight == 0 && s.admin.State != runtime.StateMaint {
		s.left = w.sessions
	}
	s.stat.Weight = weight
	w.checkExposure()
	return nil
}

func (w *world) SetState(ctx context.Context, backend, server string, state runtime.State) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.record("SetState %s/%s %s", backend, server, state); err != nil {
		return err
	}
	s, err := w.server(backend, server)
	if err != nil {
		return err
	}
	switch {
	case state == runtime.StateDrain && s.admin.State == runtime.StateReady && s.stat.Weight > 0:
		s.left = w.sessions
	case state == runtime.StateMaint && s.admin.State == runtime.StateReady && s.stat.Weight > 0:
		s.left = w.sessions // maintenance straight from serving: its sessions in flight
	case state != runtime.StateMaint && s.admin.State == runtime.StateMaint:
		// Leaving maintenance alone: HAProxy sets the health to rise, UP
		// at once, without a check.
		s.stat.CheckHealth = s.stat.CheckRise
	}
	s.admin.State = state
	w.checkExposure()
	return nil
}

func (w *world) SetAddr(ctx context.Context, backend, server, ip string, port int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.record("SetAddr %s/%s %s:%d", backend, server, ip, port); err != nil {
		return err
	}
	s, err := w.server(backend, server)
	if err != nil {
		return err
	}
	s.stat.Addr = ip + ":" + strconv.Itoa(port)
	w.checkExposure()
	return nil
}

func (w *world) ForceHealthDown(ctx context.Context, backend, server string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.record("ForceHealthDown %s/%s", backend, server); err != nil {
		return err
	}
	s, err := w.server(backend, server)
	if err != nil {
		return err
	}
	s.stat.CheckHealth, s.stat.Status, s.fromZero = 0, "DOWN", true
	return nil
}

func (w *world) LeaveMaint(ctx context.Context, backend, server string, to runtime.State) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.record("LeaveMaint %s/%s %s", backend, server, to); err != nil {
		return err
	}
	s, err := w.server(backend, server)
	if err != nil {
		return err
	}
	s.admin.State = to
	s.stat.CheckHealth, s.stat.Status, s.fromZero = 0, "DOWN", true
	return nil
}

func (w *world) ShutdownSessions(ctx context.Context, backend, server string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.record("ShutdownSessions %s/%s", backend, server); err != nil {
		return err
	}
	s, err := w.server(backend, server)
	if err != nil {
		return err
	}
	s.left = 0
	return nil
}

// Info answers `show info`; reload makes the next answer a new worker.
func (w *world) Info(ctx context.Context) (runtime.Info, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.haproxyDown != nil {
		return runtime.Info{}, w.haproxyDown
	}
	return runtime.Info{Pid: w.pid + 1, UptimeSec: 100}, nil
}

// SocketOwner names the process serving the stats socket.
func (w *world) SocketOwner(ctx context.Context) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.haproxyDown != nil {
		return 0, w.haproxyDown
	}
	switch {
	case w.owner < 0:
		return 0, nil
	case w.owner == 0:
		return w.pid + 1, nil
	}
	return w.owner, nil
}

// --- Docker ---

func (w *world) Inspect(ctx context.Context, nameOrID string) (docker.Container, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dockerDown != nil {
		w.refused++
		return docker.Container{}, w.dockerDown
	}
	c := w.byName(nameOrID)
	if c == nil {
		return docker.Container{}, fmt.Errorf("container %s: %w", nameOrID, docker.ErrContainerNotFound)
	}
	return *c, nil
}

func (w *world) EnsureImage(ctx context.Context, ref string, progress func(docker.PullProgress)) (string, error) {
	w.mu.Lock()
	id, ok := w.images[ref]
	pull := w.pulls[ref]
	w.mu.Unlock()
	if ok {
		return id, nil
	}
	if pull == nil {
		return "", fmt.Errorf("image %s: %w", ref, docker.ErrImageNotFound)
	}
	if err := pull.run(ctx, progress); err != nil {
		return "", fmt.Errorf("pull image %s: %w", ref, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.images[ref] = pull.id
	return pull.id, nil
}

// fakePull is the registry behind an image that is not on the fake host:
// a pull of it reports steps, one every every, then has the image, or,
// with hang, stalls until its context ends, as a registry that stops
// sending a layer does.
type fakePull struct {
	id    string
	steps []docker.PullProgress
	every time.Duration
	hang  bool
	// started is closed when a pull begins, ended once it returned.
	started, ended chan struct{}
}

// pullable makes ref an image the fake host does not have and pulls as p
// says; the pull's ID is sha256:<ref>.
func (w *world) pullable(ref string, p *fakePull) *fakePull {
	w.mu.Lock()
	defer w.mu.Unlock()
	p.id = "sha256:" + ref
	p.started, p.ended = make(chan struct{}), make(chan struct{})
	if w.pulls == nil {
		w.pulls = map[string]*fakePull{}
	}
	w.pulls[ref] = p
	return p
}

func (p *fakePull) run(ctx context.Context, progress func(docker.PullProgress)) error {
	close(p.started)
	defer close(p.ended)
	for _, s := range p.steps {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(p.every):
		}
		if progress != nil {
			progress(s)
		}
	}
	if p.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (w *world) Clone(ctx context.Context, from, image, name string, moves ...docker.HostPortMove) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.record("Clone %s %s", image, name); err != nil {
		return "", err
	}
	old := w.byName(from)
	if w.byName(name) != nil {
		return "", docker.ErrNameConflict
	}
	id := w.newID()
	port := old.Ports["8080/tcp"][0].HostPort
	if w.ephemeral {
		w.nextPrt++
		port = w.nextPrt
	}
	fixed := old.FixedHostPorts
	for _, m := range moves {
		if port != m.From {
			return "", fmt.Errorf("clone %s: nothing published on host port %d", from, m.From)
		}
		port, fixed = m.To, []string{fmt.Sprintf("127.0.0.1:%d->8080/tcp", m.To)}
	}
	w.ctrs[id] = &docker.Container{ID: id, Name: name, Image: image, ImageID: w.images[image],
		Ports:          map[string][]docker.PortBinding{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: port}}},
		FixedHostPorts: fixed}
	return id, nil
}

func (w *world) setRunning(verb, id string, running bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byName(id) == nil {
		return fmt.Errorf("container %s: %w", id, docker.ErrContainerNotFound)
	}
	if err := w.record("%s %s", verb, w.byName(id).Name); err != nil {
		return err
	}
	w.byName(id).Running = running
	return nil
}

// Start starts a stopped container; on a running one, even one in its
// shutdown grace, it does nothing, as Docker's.
func (w *world) Start(ctx context.Context, id string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.byName(id)
	if c == nil {
		return fmt.Errorf("container %s: %w", id, docker.ErrContainerNotFound)
	}
	if err := w.record("Start %s", c.Name); err != nil {
		return err
	}
	c.Running = true
	w.checkExposure()
	return nil
}

// Stop stops a container; with stopGrace, as Docker does with an app that
// takes that long to exit: the signal is sent at once, and a Stop cut off
// by its ctx leaves the container running out its grace.
func (w *world) Stop(ctx context.Context, id string) error {
	w.mu.Lock()
	w.checkStop(id)
	grace := w.stopGrace
	w.mu.Unlock()
	if grace == 0 {
		return w.setRunning("Stop", id, false)
	}
	w.mu.Lock()
	c := w.byName(id)
	if c == nil {
		w.mu.Unlock()
		return fmt.Errorf("container %s: %w", id, docker.ErrContainerNotFound)
	}
	if err := w.record("Stop %s", c.Name); err != nil {
		w.mu.Unlock()
		return err
	}
	if _, stopping := w.exitAt[c.ID]; c.Running && !stopping {
		w.exitAt[c.ID] = time.Now().Add(grace)
	}
	at, hook := w.exitAt[c.ID], w.onSignal
	w.onSignal = nil
	w.mu.Unlock()
	if hook != nil {
		hook()
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("stop container %s: %w", id, ctx.Err())
	case <-time.After(time.Until(at)):
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reap()
	return nil
}

func (w *world) Rename(ctx context.Context, id, name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.record("Rename %s %s", w.byName(id).Name, name); err != nil {
		return err
	}
	if other := w.byName(name); other != nil && other.ID != id {
		return fmt.Errorf("rename to %s: %w", name, docker.ErrNameConflict)
	}
	w.byName(id).Name = name
	return nil
}

func (w *world) Remove(ctx context.Context, id string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byName(id) == nil {
		return nil // as Docker's client: removing what is gone is done
	}
	if err := w.record("Remove %s", w.byName(id).Name); err != nil {
		return err
	}
	delete(w.ctrs, w.byName(id).ID)
	return nil
}

func (w *world) WaitHealthy(ctx context.Context, id string, startInterval time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.startIntervals = append(w.startIntervals, startInterval)
	if w.dockerDown != nil {
		w.refused++
	}
	if err := cmp.Or(w.dockerDown, w.fail["WaitHealthy"]); err != nil {
		return err
	}
	if c := w.byName(id); !c.Running {
		return docker.ErrExited
	}
	return nil
}

// mutations returns the mutating calls so far.
func (w *world) mutations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

// newTestAgent returns an agent over w whose probe asks w, with short waits.
func newTestAgent(t *testing.T, w *world, slots ...SlotConfig) *Agent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.Slots = slots
	cfg.Drain.Timeout = 2 * time.Second
	cfg.Health.Timeout = 2 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := New(cfg, w, w, slog.New(slog.NewTextHandler(io.Discard, nil)))
	// Whatever the test, haroll must never stop a container HAProxy can
	// still select nor expose one before its gate.
	t.Cleanup(func() {
		for _, v := range w.safetyViolations() {
			t.Errorf("safety: %s", v)
		}
	})
	a.poll = time.Millisecond
	a.settle = 0
	a.probe = func(ctx context.Context, addr address) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.healthyAt(addr.String()) {
			return fmt.Errorf("connection refused")
		}
		return nil
	}
	return a
}

// ServersState renders `show servers state` from the servers, in the format
// of HAProxy 2.6 (be_id 1 for every backend), in no particular order.
func (w *world) ServersState(ctx context.Context) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := cmp.Or(w.haproxyDown, w.fail["ServersState"]); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n")
	for _, s := range w.servers {
		ip, port, _ := strings.Cut(cmp.Or(s.stat.Addr, "127.0.0.1:0"), ":")
		op, adm := 0, 0
		if s.stat.CheckHealth >= s.stat.CheckRise || !s.stat.Checked {
			op = 2
		}
		switch s.admin.State {
		case runtime.StateMaint:
			adm, op = 0x01, 0
		case runtime.StateDrain:
			adm = 0x08
		}
		fmt.Fprintf(&b, "1 %s %d %s %s %d %d %d %d 1 15 3 %d 6 0 0 0 - %s - 0 0 - - 0\n",
			s.stat.Backend, s.stat.ID, s.stat.Server, ip, op, adm, s.stat.Weight, cmp.Or(s.weight, s.stat.Weight), s.stat.CheckHealth, port)
	}
	return b.String(), nil
}
