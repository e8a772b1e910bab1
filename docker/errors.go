package docker

import "errors"

// Sentinel errors; functions wrap them with the container or image concerned, test with errors.Is.
var (
	// ErrContainerNotFound: no container has that name or ID.
	ErrContainerNotFound = errors.New("container not found")
	// ErrImageNotFound: the image is not present locally and could not be pulled.
	ErrImageNotFound = errors.New("image not found")
	// ErrUnhealthy: Docker reports the container's healthcheck as unhealthy.
	ErrUnhealthy = errors.New("container unhealthy")
	// ErrExited: the container stopped (or never ran) while it was expected to run.
	ErrExited = errors.New("container exited")
	// ErrNameConflict: another container already holds the requested name.
	ErrNameConflict = errors.New("container name already in use")
	// ErrUnreachable: the daemon could not be reached (not running, restarting, socket gone).
	ErrUnreachable = errors.New("docker daemon unreachable")
	// ErrTimeout: the daemon did not answer one call within the client's timeout.
	ErrTimeout = errors.New("docker call timed out")
)
