package docker

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
)

// EnsureImage returns the ID (sha256:...) of the local image ref, pulling it first only when it is not
// present locally. Pulls are anonymous: a private registry needs the image pulled beforehand. An image
// that is neither local nor pullable is ErrImageNotFound, with the pull error. The pull has no deadline
// of its own: ctx bounds it, and when ctx ends the pull stops (the daemon cancels it once no client
// waits for it) and the error wraps ctx.Err(). progress, when not nil, is called with every change of the
// pull's progress, on the calling goroutine; it is not called when the image is local.
func (c *Client) EnsureImage(ctx context.Context, ref string, progress func(PullProgress)) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("ensure image: empty image reference: %w", ErrImageNotFound)
	}
	id, err := c.localImageID(ctx, ref)
	if err == nil || !errors.Is(err, ErrImageNotFound) {
		return id, err
	}
	if err := c.pull(ctx, ref, progress); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("pull image %s: %w", ref, ctx.Err())
		}
		return "", fmt.Errorf("image %s: %w: it is not on this host and pulling it failed: %v; build it here, `docker load` it, or push it to a registry this host can reach",
			ref, ErrImageNotFound, err)
	}
	return c.localImageID(ctx, ref)
}

// localImageID returns the ID of the local image ref, or ErrImageNotFound.
func (c *Client) localImageID(ctx context.Context, ref string) (string, error) {
	var resp image.InspectResponse
	err := c.bounded(ctx, 0, func(ctx context.Context) (err error) {
		resp, err = c.api.ImageInspect(ctx, ref)
		return err
	})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("image %s is not present locally: %w", ref, ErrImageNotFound)
		}
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return resp.ID, nil
}

// pull pulls ref and reports the error the daemon streams back, if any.
// Cancelling ctx closes the connection, and the daemon cancels the pull
// once no client waits for it.
func (c *Client) pull(ctx context.Context, ref string, progress func(PullProgress)) error {
	body, err := c.api.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return err
	}
	defer body.Close()
	return readPull(body, progress)
}
