package agent

import (
	"errors"
	"io"
	"log/slog"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/distribution/reference"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent/agentpb"
)

// fuzzAgents are agents with three slots and no HAProxy or Docker: one that
// allows any image and one limited by allowed_images.
func fuzzAgents(f *testing.F) (open, limited *Agent) {
	f.Helper()
	cfg := DefaultConfig()
	cfg.StateDir = f.TempDir()
	cfg.Slots = []SlotConfig{
		{Name: "web-1", Backend: "web", Server: "web1", Container: "web-1"},
		{Name: "web-2", Backend: "web", Server: "web2", Container: "web-2"},
		{Name: "api", Backend: "api", Server: "api1", Container: "api-1", Port: 8080},
	}
	if err := cfg.Validate(); err != nil {
		f.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	limitedCfg := cfg
	limitedCfg.AllowedImages = []string{"registry.example.com/shop/web:*", "app:1.*", "docker.io/library/*"}
	if err := limitedCfg.Validate(); err != nil {
		f.Fatal(err)
	}
	return New(cfg, nil, nil, log), New(limitedCfg, nil, nil, log)
}

// FuzzRedeployRequestValidation runs the checks Redeploy makes before it
// touches anything on a request built from fuzzed strings; slots is a
// comma-separated list ("" for none, that is every slot).
func FuzzRedeployRequestValidation(f *testing.F) {
	for _, seed := range [][2]string{
		{"registry.example.com/shop/web:1.2", ""},
		{"registry.example.com/shop/web:1.2", "web-2,web-1"},
		{"app:1.4", "api,api"},
		{"nginx", "web-1,nope"},
		{"nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "api"},
		{"localhost:5000/app:latest", ","},
		{"UPPER/case", "WEB-1"},
		{"a:b:c", "web-1 "},
		{"", ""},
		{"registry.example.com/shop/web:*", "web-1,web-2,api"},
		{"docker.io/library/../etc", "\x00"},
	} {
		f.Add(seed[0], seed[1])
	}
	open, limited := fuzzAgents(f)
	f.Fuzz(func(t *testing.T, image, slots string) {
		req := &agentpb.RedeployRequest{Image: image}
		if slots != "" {
			req.Slots = strings.Split(slots, ",")
		}
		checkSelectSlots(t, open, req.GetSlots())
		for _, a := range []*Agent{open, limited} {
			checkValidateImage(t, a, req.GetImage())
		}
	})
}

func checkSelectSlots(t *testing.T, a *Agent, names []string) {
	t.Helper()
	configured := a.slotNames()
	got, err := a.selectSlots(names)
	if err != nil {
		if !errors.Is(err, ErrUnknownSlot) || got != nil {
			t.Fatalf("selectSlots(%q) = %v, %v; want no slot and ErrUnknownSlot", names, got, err)
		}
		if code := status.Code(toStatus(err)); code != codes.InvalidArgument {
			t.Fatalf("selectSlots(%q): %v maps to %s, want InvalidArgument", names, err, code)
		}
		if !slices.ContainsFunc(names, func(n string) bool { return !slices.Contains(configured, n) }) {
			t.Fatalf("selectSlots(%q) refused configured slots: %v", names, err)
		}
		return
	}
	var gotNames []string
	for _, s := range got {
		if !slices.ContainsFunc(a.cfg.Slots, func(c SlotConfig) bool { return reflect.DeepEqual(c, s) }) {
			t.Fatalf("selectSlots(%q) returned %+v, which is not configured", names, s)
		}
		gotNames = append(gotNames, s.Name)
	}
	// In config order, each once, and exactly the ones asked for (all for none).
	want := configured
	if len(names) > 0 {
		want = slices.DeleteFunc(slices.Clone(configured), func(n string) bool { return !slices.Contains(names, n) })
	}
	if !slices.Equal(gotNames, want) {
		t.Fatalf("selectSlots(%q) = %q, want %q", names, gotNames, want)
	}
	for _, n := range names {
		if !slices.Contains(gotNames, n) {
			t.Fatalf("selectSlots(%q) accepted %q but does not return it", names, n)
		}
	}
}

func checkValidateImage(t *testing.T, a *Agent, image string) {
	t.Helper()
	_, parseErr := reference.ParseNormalizedNamed(image)
	err := a.validateImage(image)
	switch {
	case err == nil && parseErr != nil:
		t.Fatalf("validateImage accepted %q, which does not parse: %v", image, parseErr)
	case err == nil && len(a.cfg.AllowedImages) > 0 &&
		!slices.ContainsFunc(a.cfg.AllowedImages, func(p string) bool { ok, _ := path.Match(p, image); return ok }):
		t.Fatalf("validateImage accepted %q, which matches none of %q", image, a.cfg.AllowedImages)
	case err == nil:
		return
	case parseErr != nil && !errors.Is(err, ErrInvalidImage):
		t.Fatalf("validateImage(%q) = %v, want ErrInvalidImage", image, err)
	case parseErr == nil && !errors.Is(err, ErrImageNotAllowed):
		t.Fatalf("validateImage(%q) = %v, want ErrImageNotAllowed (it parses)", image, err)
	}
	want := codes.InvalidArgument
	if errors.Is(err, ErrImageNotAllowed) {
		want = codes.PermissionDenied
	}
	if code := status.Code(toStatus(err)); code != want {
		t.Fatalf("validateImage(%q): %v maps to %s, want %s", image, err, code, want)
	}
}
