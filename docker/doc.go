// Package docker is haroll's narrow view of the Docker Engine API: inspect a container, make sure an
// image is present, clone a container's configuration onto a new image, start, stop, rename and remove
// containers, and wait until Docker reports one healthy.
//
// It owns the translation between Docker's data model and what a slot replacement needs, in particular
// which parts of a container's configuration the operator chose and which it merely inherited from its
// image (see Clone). It knows nothing of HAProxy or slots, and it does not log: every failure comes
// back as an error naming the container or image, wrapping one of the sentinel errors where the caller
// must tell cases apart.
package docker
