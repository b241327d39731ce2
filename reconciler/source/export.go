package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/sys/unix"
)

// tmpPrefix marks half-written exports; Prune removes any a crash left.
const tmpPrefix = ".tmp-"

// exportTree writes the tree of commit h into a temporary directory under
// parent and renames it to dir, so dir appears complete or not at all.
func exportTree(ctx context.Context, cache *git.Repository, h plumbing.Hash, parent, dir string) (err error) {
	commit, err := object.GetCommit(cache.Storer, h)
	if err != nil {
		return fmt.Errorf("git source: commit %s: %w", h, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return fmt.Errorf("git source: tree of %s: %w", h, err)
	}
	tmp, err := os.MkdirTemp(parent, tmpPrefix+h.String()[:12]+"-")
	if err != nil {
		return fmt.Errorf("git source: export %s: %w", h, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.RemoveAll(tmp))
		}
	}()
	if err := writeTree(ctx, tree, tmp); err != nil {
		return fmt.Errorf("git source: export %s: %w", h, err)
	}
	if err := finish(tmp, dir); err != nil {
		return fmt.Errorf("git source: export %s: %w", h, err)
	}
	return nil
}

// writeTree writes every file of tree below dir. os.Root keeps a hostile
// tree (entries named "..", or a symlink followed by a path through it)
// from writing outside dir.
func writeTree(ctx context.Context, tree *object.Tree, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return tree.Files().ForEach(func(f *object.File) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return writeFile(root, f)
	})
}

func writeFile(root *os.Root, f *object.File) error {
	if err := checkPath(f.Name); err != nil {
		return err
	}
	if d := path.Dir(f.Name); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	switch f.Mode {
	case filemode.Symlink:
		target, err := f.Contents()
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Name, err)
		}
		return root.Symlink(target, f.Name)
	case filemode.Executable:
		return writeBlob(root, f, 0o755)
	default:
		return writeBlob(root, f, 0o644)
	}
}

func writeBlob(root *os.Root, f *object.File, perm os.FileMode) error {
	src, err := f.Reader()
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name, err)
	}
	defer src.Close()
	dst, err := root.OpenFile(f.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if err == nil {
		// The umask must not decide what the deployed files look like.
		err = dst.Chmod(perm)
	}
	return errors.Join(err, dst.Close())
}

// checkPath rejects names git itself would refuse to check out, and never
// recreates a .git directory.
func checkPath(name string) error {
	for part := range strings.SplitSeq(name, "/") {
		if part == "" || part == "." || part == ".." || strings.EqualFold(part, ".git") || strings.ContainsRune(part, 0) {
			return fmt.Errorf("refusing to write tree entry %q", name)
		}
	}
	return nil
}

// finish makes the export durable and then visible under its final name.
func finish(tmp, dir string) error {
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := syncFS(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return syncDir(path.Dir(dir))
}

// syncFS flushes the file system holding dir once, which is far cheaper
// than an fsync per exported file.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// syncDir persists a rename inside dir.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
