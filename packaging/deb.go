package packaging

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// Where the package installs things.
const (
	Name        = "haroll"
	BinPath     = "/usr/bin/haroll"
	UnitPath    = "/lib/systemd/system/haroll-agent.service"
	ConfigPath  = "/etc/haroll/agent.yaml" // a conffile: dpkg keeps an edited one on upgrade
	ExamplesDir = "/usr/share/doc/haroll/examples"
)

// versionVar is the variable `haroll version` prints, set with -ldflags -X.
const versionVar = "github.com/haroll/haroll/internal/cli.version"

// Options says what Build builds.
type Options struct {
	// Root is the repository: go.mod, configs/ and packaging/scripts/.
	Root string
	// Version is stamped into `haroll version` as it is; the package's
	// version is DebVersion(Version).
	Version string
	// Arch is the GOARCH to build for, which Debian names alike (amd64,
	// arm64); empty means amd64.
	Arch string
	// OutDir receives haroll_<deb version>_<arch>.deb; it is created if
	// needed.
	OutDir string
	// Go is the go command; empty means "go" on PATH.
	Go string
}

// Build compiles haroll for linux/Arch (CGO_ENABLED=0, Version stamped) and
// packages it as a .deb with the agent's systemd unit, /etc/haroll/agent.yaml
// (a config file, from configs/agent.yaml), the examples and the maintainer
// scripts. It returns the package's path. A bad version, a failed compile or a
// missing source file is an error that names it; no partial package is left
// in OutDir.
func Build(ctx context.Context, o Options) (string, error) {
	debVersion, err := DebVersion(o.Version)
	if err != nil {
		return "", err
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	if o.Go == "" {
		o.Go = "go"
	}
	tmp, err := os.MkdirTemp("", "haroll-dist")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "haroll")
	if err := buildBinary(ctx, o, bin); err != nil {
		return "", err
	}

	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          Name,
		Arch:          o.Arch,
		Platform:      "linux",
		Version:       debVersion,
		VersionSchema: "none", // DebVersion already made it a Debian version
		Section:       "admin",
		Maintainer:    "haroll maintainers <haroll@users.noreply.github.com>",
		Homepage:      "https://github.com/haroll/haroll",
		Description: "replaces Docker containers behind HAProxy without losing a request\n" +
			"haroll's agent drains each HAProxy server, replaces its container, proves the new one\n" +
			"healthy with fresh HAProxy checks and gives the traffic back, one slot at a time; a\n" +
			"coordinator rolls an image over a fleet of agents in batches.",
		Overridables: nfpm.Overridables{
			Recommends: []string{"haproxy", "docker.io | docker-ce"},
			Contents:   contents(o.Root, bin),
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(o.Root, "packaging/scripts/postinstall.sh"),
				PreRemove:   filepath.Join(o.Root, "packaging/scripts/preremove.sh"),
				PostRemove:  filepath.Join(o.Root, "packaging/scripts/postremove.sh"),
			},
		},
	})
	for _, c := range info.Contents {
		if c.Source == "" {
			continue
		}
		if _, err := os.Stat(c.Source); err != nil {
			return "", fmt.Errorf("package content for %s: %w: is Root (%s) the repository?", c.Destination, err, o.Root)
		}
	}

	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(o.OutDir, fmt.Sprintf("%s_%s_%s.deb", Name, debVersion, o.Arch))
	f, err := os.CreateTemp(o.OutDir, ".haroll-*.deb")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("package %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}

// buildBinary compiles ./cmd/haroll as a static binary with the version stamped.
func buildBinary(ctx context.Context, o Options, out string) error {
	cmd := exec.CommandContext(ctx, o.Go, "build", "-trimpath",
		"-ldflags", "-X "+versionVar+"="+o.Version, "-o", out, "./cmd/haroll")
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.Arch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("go build ./cmd/haroll in %s for linux/%s failed:\n%s", o.Root, o.Arch, strings.TrimSpace(string(msg)))
		}
		return fmt.Errorf("go build: %w (is go on PATH?)", err)
	}
	return nil
}

// contents lists the package's files. /etc/haroll/agent.yaml starts as the
// example config and is the operator's from then on (config|noreplace).
func contents(root, bin string) files.Contents {
	mode := func(m os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Owner: "root", Group: "root", Mode: m}
	}
	cs := files.Contents{
		{Source: bin, Destination: BinPath, FileInfo: mode(0o755)},
		{Source: filepath.Join(root, "configs/haroll-agent.service"), Destination: UnitPath, FileInfo: mode(0o644)},
		// postinst gives /etc/haroll and agent.yaml to group haroll once the group exists.
		{Destination: filepath.Dir(ConfigPath), Type: files.TypeDir, FileInfo: mode(0o750)},
		{Source: filepath.Join(root, "configs/agent.yaml"), Destination: ConfigPath, Type: files.TypeConfigNoReplace, FileInfo: mode(0o640)},
	}
	for _, name := range []string{"agent.yaml", "coordinator.yaml", "haproxy.cfg"} {
		cs = append(cs, &files.Content{Source: filepath.Join(root, "configs", name), Destination: ExamplesDir + "/" + name, FileInfo: mode(0o644)})
	}
	return cs
}
