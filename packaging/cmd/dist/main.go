// Command dist builds haroll's Debian package: `make dist`, or
//
//	go run ./packaging/cmd/dist -version 1.4.2 -out dist
//
// from the repository's root. It prints the package's path.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/haroll/haroll/packaging"
)

func main() {
	var o packaging.Options
	flag.StringVar(&o.Version, "version", "", "version to stamp into `haroll version` (required), e.g. the output of git describe --tags --always --dirty")
	flag.StringVar(&o.Arch, "arch", "amd64", "GOARCH to build for, also the Debian architecture")
	flag.StringVar(&o.OutDir, "out", "dist", "directory for the .deb")
	flag.StringVar(&o.Root, "root", ".", "the repository's root")
	flag.Parse()
	path, err := packaging.Build(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
