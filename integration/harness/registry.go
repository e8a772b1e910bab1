package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
)

// Registry is an image registry on 127.0.0.1 that serves one image, of one
// layer of about 1 MB, under every repository and tag: the part of the
// Docker Registry HTTP API V2 a pull uses (/v2/, manifests, blobs). The
// local dockerd pulls from it over plain HTTP with no change to its
// configuration, since 127.0.0.0/8 is an insecure registry by default.
//
// With stall, it sends the first half of the layer and then nothing more,
// holding the connection open, as a registry whose link died does, until
// Close. The layer is new for every Registry, so the daemon never finds it
// on the host already.
type Registry struct {
	// Host is the registry's address, 127.0.0.1:port.
	Host string
	// ImageID is the ID a pull of the image gives (its config's digest).
	ImageID string
	// LayerSize is the size of the layer's blob, as the pull reports it.
	LayerSize int64

	stall    bool
	srv      *http.Server
	l        net.Listener
	release  chan struct{}
	requests chan struct{}
	closing  sync.Once

	mu     sync.Mutex
	layers int // layer blob requests so far
}

// StartRegistry starts a registry on a free port of 127.0.0.1.
func StartRegistry(stall bool) (*Registry, error) {
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	data := bytes.Repeat([]byte(hex.EncodeToString(nonce)), 1<<16) // 1 MiB
	if err := tw.WriteHeader(&tar.Header{Name: "haroll-test", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	_, _ = tw.Write(data)
	_ = tw.Close()
	// Uncompressed inside gzip, so that half of the blob is half of the bytes.
	var gb bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&gb, gzip.NoCompression)
	_, _ = gz.Write(tb.Bytes())
	_ = gz.Close()
	layer := gb.Bytes()
	config, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Labels": map[string]string{TestLabel: "1"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest(tb.Bytes())}}})
	if err != nil {
		return nil, err
	}
	manifest, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": manifestType,
		"config": map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": digest(config)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer), "digest": digest(layer)}}})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Registry{Host: l.Addr().String(), ImageID: digest(config), LayerSize: int64(len(layer)), stall: stall, l: l,
		release: make(chan struct{}), requests: make(chan struct{}, 64)}
	blobs := map[string][]byte{digest(config): config, digest(layer): layer}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
		switch {
		case req.URL.Path == "/v2/":
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		case strings.Contains(req.URL.Path, "/manifests/"):
			w.Header().Set("Content-Type", manifestType)
			w.Header().Set("Docker-Content-Digest", digest(manifest))
			w.Header().Set("Content-Length", fmt.Sprint(len(manifest)))
			if req.Method != http.MethodHead {
				_, _ = w.Write(manifest)
			}
		case strings.Contains(req.URL.Path, "/blobs/") && blobs[name] != nil:
			b := blobs[name]
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			if name != digest(layer) {
				_, _ = w.Write(b)
				return
			}
			r.mu.Lock()
			r.layers++
			r.mu.Unlock()
			select {
			case r.requests <- struct{}{}:
			default:
			}
			if !r.stall {
				_, _ = w.Write(b)
				return
			}
			_, _ = w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			select {
			case <-req.Context().Done():
			case <-r.release:
			}
		default:
			http.NotFound(w, req)
		}
	})}
	go func() { _ = r.srv.Serve(l) }()
	return r, nil
}

const manifestType = "application/vnd.docker.distribution.manifest.v2+json"

func digest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// Ref is the reference of the image under repoTag ("haroll-test/app:1").
func (r *Registry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// LayerRequests is how many times the layer was asked for.
func (r *Registry) LayerRequests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.layers
}

// LayerRequested receives once for each request of the layer (the first
// 64 unread ones).
func (r *Registry) LayerRequested() <-chan struct{} { return r.requests }

// Close ends the stalled layer downloads and stops the registry. The
// daemon keeps a stalled connection to the registry open after the pull
// that made it is cancelled; Close ends it.
func (r *Registry) Close() {
	r.closing.Do(func() {
		close(r.release)
		_ = r.srv.Close()
	})
}
