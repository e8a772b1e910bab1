package harness

import (
	"fmt"
	"net"
	"os"
	"sync"
)

// SwitchMode is what a SocketSwitch does with connections.
type SwitchMode int

const (
	// Pass forwards every connection to the target.
	Pass SwitchMode = iota
	// Gone removes the socket: a client's dial fails as if the server had
	// died or were restarting; open connections are closed.
	Gone
	// Hang accepts connections and never answers, as a wedged server does;
	// open connections stop passing data. Switching back to Pass closes them.
	Hang
)

func (m SwitchMode) String() string {
	return [...]string{"pass", "gone", "hang"}[m]
}

// SocketSwitch is a unix socket in front of another one (the HAProxy
// runtime API, the Docker API), to make it vanish or hang at a chosen moment
// without touching the server behind it.
type SocketSwitch struct {
	Path   string
	target string

	mu      sync.Mutex
	mode    SwitchMode
	changed chan struct{} // closed when the mode changes
	ln      net.Listener
	conns   map[net.Conn]struct{} // open client and upstream connections
	wg      sync.WaitGroup
}

// StartSocketSwitch listens on path (which must not exist) and forwards to
// the unix socket target.
func StartSocketSwitch(path, target string) (*SocketSwitch, error) {
	s := &SocketSwitch{Path: path, target: target, conns: map[net.Conn]struct{}{}, changed: make(chan struct{})}
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *SocketSwitch) listen() error {
	ln, err := net.Listen("unix", s.Path)
	if err != nil {
		return fmt.Errorf("socket switch: %w", err)
	}
	if err := os.Chmod(s.Path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("socket switch: %w", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

// Set switches to mode m.
func (s *SocketSwitch) Set(m SwitchMode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m == s.mode {
		return nil
	}
	if m != Hang {
		s.closeConns()
	}
	close(s.changed)
	s.changed = make(chan struct{})
	var err error
	switch {
	case m == Gone:
		err = s.ln.Close() // also unlinks the socket file
		s.ln = nil
	case s.mode == Gone:
		err = s.listen()
	}
	s.mode = m
	return err
}

// Close removes the socket and closes every connection.
func (s *SocketSwitch) Close() error {
	err := s.Set(Gone)
	s.wg.Wait()
	return err
}

func (s *SocketSwitch) closeConns() {
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
}

func (s *SocketSwitch) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
		}()
	}
}

// serve forwards c, or holds it unanswered while the switch hangs.
func (s *SocketSwitch) serve(c net.Conn) {
	s.mu.Lock()
	mode := s.mode
	if mode != Pass {
		s.conns[c] = struct{}{} // held until the mode changes
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	up, err := net.Dial("unix", s.target)
	if err != nil {
		c.Close()
		return
	}
	s.mu.Lock()
	if s.mode != Pass {
		s.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	s.conns[c], s.conns[up] = struct{}{}, struct{}{}
	s.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		s.copy(dst, src)
		if uc, ok := dst.(*net.UnixConn); ok {
			_ = uc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range []net.Conn{c, up} {
		if _, open := s.conns[x]; open {
			x.Close()
			delete(s.conns, x)
		}
	}
}

// copy copies src to dst until either ends; while the switch hangs, what is
// read is held back, and the connection closes at the next mode change.
func (s *SocketSwitch) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			s.mu.Lock()
			mode, changed := s.mode, s.changed
			s.mu.Unlock()
			if mode == Hang {
				<-changed
				dst.Close()
				src.Close()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
