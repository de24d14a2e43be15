package hostpath

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// copyTree copies the directory src into dst, which must not exist yet.
// Regular files, directories and symlinks are copied with their permission bits
// and owners, as a block-level snapshot keeps them (PostgreSQL refuses a data
// directory that is not 0700 and its own); sockets, pipes and devices are
// skipped, because a live server's socket is not data.
// It returns the number of bytes of regular files copied.
func copyTree(src, dst string) (int64, error) {
	var total int64
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			// A file removed while we walk (a live database's temp file) is not an error.
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		switch mode := info.Mode(); {
		case mode.IsDir():
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			if err := os.Chmod(target, mode.Perm()); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case mode.IsRegular():
			n, err := copyFile(path, target, mode.Perm())
			if os.IsNotExist(err) {
				return nil
			}
			if err != nil {
				return err
			}
			total += n
		default:
			return nil
		}
		return keepOwner(target, info)
	})
	if err != nil {
		return total, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return total, nil
}

// keepOwner gives the copy the original's owner. Only root may; a driver run as
// another user keeps its own files, as it made them.
func keepOwner(path string, info fs.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return nil
	}
	return os.Lchown(path, int(st.Uid), int(st.Gid))
}

func copyFile(src, dst string, perm fs.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}
