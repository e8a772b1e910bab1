package docker

import (
	"context"
	"fmt"

	"github.com/docker/docker/client"
)

// Client talks to one Docker daemon. It is safe for concurrent use.
type Client struct {
	api *client.Client
}

// New connects to the daemon at host (a DOCKER_HOST-style address such as unix:///var/run/docker.sock
// or tcp://10.0.0.5:2376); "" means the environment (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH,
// falling back to the local socket). It negotiates the API version with the daemon and pings it with
// ctx, so an unreachable daemon is reported here rather than at the first call.
func New(ctx context.Context, host string) (*Client, error) {
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
	return &Client{api: api}, nil
}

// Close releases the client's connections.
func (c *Client) Close() error {
	return c.api.Close()
}

// APIVersion is the API version negotiated with the daemon, e.g. "1.41".
func (c *Client) APIVersion() string {
	return c.api.ClientVersion()
}
