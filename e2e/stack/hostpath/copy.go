package hostpath

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
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

// copyFile copies a regular file, keeping its holes: a volume's filesystem
// image (FilesystemImage) is as large as the volume and mostly holes, and a
// copy that filled them would be as large too. It returns the bytes of data
// copied.
func copyFile(src, dst string, perm fs.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return 0, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := copyData(out, in, info.Size())
	if err == nil {
		err = out.Truncate(info.Size())
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// copyData copies the data regions of in (SEEK_DATA/SEEK_HOLE) to the same
// offsets of out, or all of it where the filesystem cannot tell.
func copyData(out, in *os.File, size int64) (int64, error) {
	var total int64
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			// No SEEK_DATA here: copy everything.
			if _, err := in.Seek(0, io.SeekStart); err != nil {
				return total, err
			}
			return io.Copy(out, in)
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return total, err
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return total, err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return total, err
		}
		n, err := io.CopyN(out, in, hole-data)
		total += n
		if err != nil && !errors.Is(err, io.EOF) {
			return total, err
		}
		off = hole
	}
	return total, nil
}
