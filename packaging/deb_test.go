package packaging

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testVersion is stamped into the test package: the leading v shows that
// `haroll version` keeps it while the Debian version drops it.
const (
	testVersion    = "v9.8.7-test"
	testDebVersion = "9.8.7-test"
)

var built struct {
	once      sync.Once
	dir, path string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildDeb builds the package once for every test of this package, the way
// `make dist` does. Compiling haroll takes a while: -short skips it.
func buildDeb(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not compiling haroll for the package")
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "haroll-deb")
		if built.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		built.path, built.err = Build(ctx, Options{Root: "..", Version: testVersion, OutDir: built.dir})
	})
	if built.err != nil {
		t.Fatalf("build the package: %v", built.err)
	}
	return built.path
}

// need returns the path of a tool the test cannot do without. Outside CI a
// missing tool skips the test; with CI set it fails it.
func need(t *testing.T, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed, and CI is set: install dpkg (Debian's dpkg package)", tool)
		}
		t.Skipf("%s is not installed", tool)
	}
	return path
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestThePackageIsNamedAfterItsVersionAndArchitecture(t *testing.T) {
	if got, want := filepath.Base(buildDeb(t)), "haroll_"+testDebVersion+"_amd64.deb"; got != want {
		t.Errorf("package file %s, want %s", got, want)
	}
}

func TestThePackageControlNamesItsConffileAndScripts(t *testing.T) {
	dpkgDeb := need(t, "dpkg-deb")
	deb := buildDeb(t)
	info := run(t, dpkgDeb, "-I", deb)
	for _, want := range []string{"Package: haroll", "Version: " + testDebVersion, "Architecture: amd64", "postinst", "prerm", "postrm", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	if conffiles := run(t, dpkgDeb, "-I", deb, "conffiles"); strings.TrimSpace(conffiles) != ConfigPath {
		t.Errorf("conffiles = %q, want only %s", conffiles, ConfigPath)
	}
}

func TestThePackageHoldsTheBinaryTheUnitAndTheConfigs(t *testing.T) {
	dpkgDeb := need(t, "dpkg-deb")
	listing := run(t, dpkgDeb, "-c", buildDeb(t))
	want := map[string]string{ // path -> mode and owner as dpkg-deb -c prints them
		BinPath:                           "-rwxr-xr-x root/root",
		UnitPath:                          "-rw-r--r-- root/root",
		ConfigPath:                        "-rw-r----- root/root",
		filepath.Dir(ConfigPath) + "/":    "drwxr-x--- root/root",
		ExamplesDir + "/agent.yaml":       "-rw-r--r-- root/root",
		ExamplesDir + "/coordinator.yaml": "-rw-r--r-- root/root",
		ExamplesDir + "/haproxy.cfg":      "-rw-r--r-- root/root",
	}
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		path := strings.TrimPrefix(f[5], ".")
		if mode, ok := want[path]; ok {
			if got := f[0] + " " + f[1]; got != mode {
				t.Errorf("%s: %s, want %s", path, got, mode)
			}
			delete(want, path)
		}
	}
	for path := range want {
		t.Errorf("%s is not in the package:\n%s", path, listing)
	}
}

func TestThePackagedBinaryIsStaticAndStampedAndTheUnitIsTheRepositorysOwn(t *testing.T) {
	dpkgDeb := need(t, "dpkg-deb")
	dir := t.TempDir()
	run(t, dpkgDeb, "-x", buildDeb(t), dir)
	bin := filepath.Join(dir, BinPath)
	if out := strings.TrimSpace(run(t, bin, "version")); out != "haroll "+testVersion {
		t.Errorf("haroll version printed %q, want %q", out, "haroll "+testVersion)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader: it was not built with CGO_ENABLED=0")
		}
	}
	for packaged, source := range map[string]string{UnitPath: "../configs/haroll-agent.service", ConfigPath: "../configs/agent.yaml"} {
		got, err := os.ReadFile(filepath.Join(dir, packaged))
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := os.ReadFile(source); string(got) != string(want) {
			t.Errorf("the packaged %s differs from %s", packaged, source)
		}
	}
}

func TestTheHarollBinaryDoesNotImportNfpm(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../cmd/haroll").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "goreleaser/nfpm") || strings.HasPrefix(pkg, "github.com/haroll/haroll/packaging") {
			t.Errorf("cmd/haroll depends on %s", pkg)
		}
	}
}
