package hostpath

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FilesystemImage is the file in a volume's directory that holds the volume's
// own filesystem, for a StorageClass that asks for one
// (csi.storage.k8s.io/fstype: ext4). Such a volume is loop-mounted where a
// container mounts it, so a container can freeze it (fsfreeze) without
// freezing the machine's; a snapshot copies the image, as a block-level
// snapshot copies the disk.
const FilesystemImage = "ext4.img"

// requestedFSType is the filesystem a volume's capabilities ask for: "" (a
// directory of the host's filesystem), or ext4.
func requestedFSType(caps []*csi.VolumeCapability) (string, error) {
	for _, c := range caps {
		switch fs := c.GetMount().GetFsType(); fs {
		case "":
		case "ext4":
			return fs, nil
		default:
			return "", status.Errorf(codes.InvalidArgument, "fsType %q is not supported: use ext4, or none for a plain directory", fs)
		}
	}
	return "", nil
}

// makeFilesystem makes a sparse ext4 image of size bytes whose root any user
// may write, as the driver's plain volumes are.
func makeFilesystem(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		err = f.Truncate(size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return status.Errorf(codes.Internal, "create %s: %v", path, err)
	}
	for _, argv := range [][]string{
		{"mkfs.ext4", "-q", "-F", path},
		{"debugfs", "-w", "-R", "sif / mode 040777", path},
	} {
		if out, err := exec.Command(sbin(argv[0]), argv[1:]...).CombinedOutput(); err != nil {
			return status.Errorf(codes.Internal, "%s %s: %v: %s (mkfs.ext4 and debugfs come with e2fsprogs: make deps)", argv[0], path, err, out)
		}
	}
	return nil
}

// sbin finds a tool that lives in sbin, which the driver's PATH may lack.
func sbin(name string) string {
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if p := dir + "/" + name; fileExists(p) {
			return p
		}
	}
	return name
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// mountFilesystem loop-mounts the volume's image on target (readOnly as asked).
func mountFilesystem(image, target string, readOnly bool) error {
	opts := "loop"
	if readOnly {
		opts += ",ro"
	}
	if out, err := exec.Command(sbin("mount"), "-t", "ext4", "-o", opts, image, target).CombinedOutput(); err != nil {
		return fmt.Errorf("mount %s on %s: %v: %s", image, target, err, out)
	}
	return nil
}
