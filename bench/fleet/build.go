package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// build is one coordinator binary under test.
type build struct {
	label string // "tree" or "baseline@<rev>"
	bin   string
}

// buildTree builds cmd/haroll from the working tree at root into dir.
func buildTree(ctx context.Context, root, dir string) (build, error) {
	bin := filepath.Join(dir, "haroll-tree")
	if err := goBuild(ctx, root, bin); err != nil {
		return build{}, fmt.Errorf("build haroll from the tree: %w", err)
	}
	return build{label: "tree", bin: bin}, nil
}

// buildAt builds cmd/haroll at a git revision, in a temporary worktree
// under dir that is removed afterwards.
func buildAt(ctx context.Context, root, rev, dir string) (build, error) {
	short, err := git(ctx, root, "rev-parse", "--short", rev+"^{commit}")
	if err != nil {
		return build{}, err
	}
	tree := filepath.Join(dir, "baseline-src")
	if _, err := git(ctx, root, "worktree", "add", "--detach", tree, rev); err != nil {
		return build{}, err
	}
	defer git(context.WithoutCancel(ctx), root, "worktree", "remove", "--force", tree)
	bin := filepath.Join(dir, "haroll-baseline")
	if err := goBuild(ctx, tree, bin); err != nil {
		return build{}, fmt.Errorf("build haroll at %s: %w", rev, err)
	}
	return build{label: "baseline@" + short, bin: bin}, nil
}

// repoRoot is the top of the git worktree the bench runs in.
func repoRoot(ctx context.Context) (string, error) {
	return git(ctx, ".", "rev-parse", "--show-toplevel")
}

// treeRev names the working tree's commit, with "+dirty" when it has
// uncommitted changes.
func treeRev(ctx context.Context, root string) string {
	rev, err := git(ctx, root, "rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown"
	}
	if st, err := git(ctx, root, "status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
		rev += "+dirty"
	}
	return rev
}

func goBuild(ctx context.Context, dir, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/haroll")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}
