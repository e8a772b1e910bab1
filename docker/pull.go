package docker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/pkg/jsonmessage"
)

// PullProgress is how far a pull has got, as the daemon's progress stream
// tells it. Layers counts the layers the daemon has named so far (all of
// them once the manifest is read); Done those pulled or already present.
// Downloaded and Size count the bytes of the layers being downloaded whose
// size is known: a layer already on the host adds nothing to either.
type PullProgress struct {
	Downloaded, Size int64
	Layers, Done     int
}

// String reads "45.2 MB of 120 MB (3 layers done of 7)", or "nothing
// downloaded yet (0 layers done of 7)" before a layer's size is known.
func (p PullProgress) String() string {
	if p.Size == 0 {
		return fmt.Sprintf("nothing downloaded yet (%d layers done of %d)", p.Done, p.Layers)
	}
	return fmt.Sprintf("%s of %s (%d layers done of %d)", humanBytes(p.Downloaded), humanBytes(p.Size), p.Done, p.Layers)
}

// humanBytes writes n in decimal units with three significant digits, as
// the docker CLI does.
func humanBytes(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f, i := float64(n), 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.3g %s", f, units[i])
}

// layerState is one layer of a pull.
type layerState struct {
	current, total int64
	done           bool
}

// pullTracker sums the per-layer messages of a pull's progress stream.
type pullTracker struct {
	layers map[string]*layerState
	order  []string
}

// update applies one message and reports whether the progress changed.
// Only the messages about a layer count: "Pulling from <repo>" carries the
// tag as its ID, and the digest and status lines none.
func (t *pullTracker) update(m jsonmessage.JSONMessage) bool {
	if m.ID == "" || !layerStatus(m.Status) {
		return false
	}
	l := t.layers[m.ID]
	if l == nil {
		if t.layers == nil {
			t.layers = map[string]*layerState{}
		}
		l = &layerState{}
		t.layers[m.ID] = l
		t.order = append(t.order, m.ID)
	}
	switch m.Status {
	case "Already exists", "Pull complete":
		l.done = true
	case "Downloading":
		if m.Progress != nil && m.Progress.Total > 0 {
			l.current, l.total = m.Progress.Current, m.Progress.Total
		}
	case "Verifying Checksum", "Download complete":
		l.current = l.total
	}
	return true
}

// layerStatus reports whether status is one the daemon gives a layer.
func layerStatus(status string) bool {
	switch status {
	case "Pulling fs layer", "Waiting", "Already exists", "Downloading", "Verifying Checksum",
		"Download complete", "Extracting", "Pull complete":
		return true
	}
	return strings.HasPrefix(status, "Retrying") // "Retrying in 5 seconds"
}

func (t *pullTracker) progress() PullProgress {
	var p PullProgress
	for _, id := range t.order {
		l := t.layers[id]
		p.Layers++
		if l.done {
			p.Done++
		}
		p.Downloaded += l.current
		p.Size += l.total
	}
	return p
}

// readPull reads a pull's progress stream to its end, calls progress (when
// not nil) with every change, and returns the error the daemon reports in
// the stream, if any: the HTTP call itself succeeds even when the pull
// fails.
func readPull(body io.Reader, progress func(PullProgress)) error {
	dec := json.NewDecoder(body)
	var t pullTracker
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if m.Error != nil {
			return m.Error
		}
		if t.update(m) && progress != nil {
			progress(t.progress())
		}
	}
}
