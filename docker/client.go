package docker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/docker/client"
)

// DefaultTimeout bounds one API call when New is given 0.
const DefaultTimeout = 30 * time.Second

// Client talks to one Docker daemon. It is safe for concurrent use.
type Client struct {
	api     *client.Client
	timeout time.Duration // per call; Stop adds the container's stop timeout
}

// New connects to the daemon at host (a DOCKER_HOST-style address such as unix:///var/run/docker.sock
// or tcp://10.0.0.5:2376); "" means the environment (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH,
// falling back to the local socket). It negotiates the API version with the daemon and pings it with
// ctx, so an unreachable daemon is reported here rather than at the first call. timeout bounds each
// later call (0 means DefaultTimeout): a daemon that hangs or restarts is ErrTimeout or ErrUnreachable,
// never a wait without end.
func New(ctx context.Context, host string, timeout time.Duration) (*Client, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	api, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %q: %w", host, err)
	}
	ping, err := api.Ping(ctx)
	if err != nil {
		api.Close()
		return nil, fmt.Errorf("reach the Docker daemon at %s: %w (is dockerd running, and may this user use its socket?)", api.DaemonHost(), err)
	}
	api.NegotiateAPIVersionPing(ping)
	return &Client{api: api, timeout: timeout}, nil
}

// bounded runs one API call with the client's timeout plus extra, and tells
// a daemon that is gone (ErrUnreachable) or does not answer in time
// (ErrTimeout) from the call's own errors, which come back unchanged. When
// ctx itself ends, its error is what the call returned.
func (c *Client) bounded(ctx context.Context, extra time.Duration, call func(context.Context) error) error {
	callCtx, cancel := context.WithTimeout(ctx, c.timeout+extra)
	defer cancel()
	err := call(callCtx)
	switch {
	case err == nil, ctx.Err() != nil:
		return err
	case callCtx.Err() != nil:
		return fmt.Errorf("%w: no answer within %s: %v", ErrTimeout, c.timeout+extra, err)
	case client.IsErrConnectionFailed(err) && !errors.Is(err, ErrUnreachable):
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	return err
}

// Close releases the client's connections.
func (c *Client) Close() error {
	return c.api.Close()
}

// APIVersion is the API version negotiated with the daemon, e.g. "1.41".
func (c *Client) APIVersion() string {
	return c.api.ClientVersion()
}
