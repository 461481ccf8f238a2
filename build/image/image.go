// Package image builds Ballast's container images without a container engine,
// the way ko does: each image is one layer holding a static binary, a passwd
// entry for the non-root user and /tmp, on no base image at all (scratch), so
// nothing is fetched. The images of all platforms go into one OCI image index,
// written as an OCI layout under bin/images/ and pushed to a registry only
// when asked.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCI annotation and label keys (image-spec annotations.md).
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelTitle    = "org.opencontainers.image.title"
	LabelRefName  = "org.opencontainers.image.ref.name"

	// Source is the repository the images are built from.
	Source = "https://github.com/ballast-k8s/ballast"
	// DefaultRepo is where the images are pushed, and what deploy/ names.
	DefaultRepo = "ghcr.io/ballast-k8s"
	// UID and GID of the user the images run as (distroless' "nonroot").
	UID = 65532
	// User is the config's user, numeric so that runAsNonRoot can check it.
	User = "65532:65532"
)

// Spec is one image: which binary of cmd/, and where it sits in the image.
type Spec struct {
	// Name is the repository name under the registry, e.g. ballast-scheduler.
	Name string
	// Binary is the name of the program under cmd/ and of the built file.
	Binary string
	// Path is the binary's path in the image, the entrypoint.
	Path string
}

// Images are Ballast's images. The scheduler keeps kube-scheduler's path, so
// that manifests written for the upstream image work unchanged.
var Images = []Spec{
	{Name: "ballast-scheduler", Binary: "scheduler", Path: "/usr/local/bin/kube-scheduler"},
	{Name: "ballast-az-balancer", Binary: "az-balancer", Path: "/usr/local/bin/az-balancer"},
}

// Platforms are the platforms `make image` builds.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// epoch is the time of every file and of the config: images built twice from
// the same binaries are identical.
var epoch = time.Unix(0, 0).UTC()

// tagPattern is the OCI distribution spec's tag grammar.
var tagPattern = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// Options of one build.
type Options struct {
	// Repo is the registry and path the image names start with, e.g. ghcr.io/ballast-k8s.
	Repo string
	// Version is the image tag and the version the binaries print.
	Version string
	// Revision is the git commit.
	Revision string
	// Binary returns the file of spec's binary built for platform.
	Binary func(spec Spec, platform v1.Platform) string
	// Platforms to put in the index.
	Platforms []v1.Platform
}

// Ref returns the image reference repo/name:version.
func Ref(repo string, spec Spec, version string) string {
	return strings.TrimSuffix(repo, "/") + "/" + spec.Name + ":" + version
}

// CheckVersion rejects a version that cannot be an image tag (e.g. with a '+').
func CheckVersion(v string) error {
	if !tagPattern.MatchString(v) {
		return fmt.Errorf("version %q is not a valid image tag (letters, digits, '_', '.', '-'; at most 128)", v)
	}
	return nil
}

// Build returns the image index of spec for opts.Platforms.
func Build(spec Spec, opts Options) (v1.ImageIndex, error) {
	if err := CheckVersion(opts.Version); err != nil {
		return nil, err
	}
	if len(opts.Platforms) == 0 {
		return nil, fmt.Errorf("%s: no platforms", spec.Name)
	}
	if _, err := name.NewTag(Ref(opts.Repo, spec, opts.Version), name.StrictValidation); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	annotations := map[string]string{
		LabelSource:   Source,
		LabelVersion:  opts.Version,
		LabelRevision: opts.Revision,
		LabelTitle:    spec.Name,
	}
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range opts.Platforms {
		img, err := buildImage(spec, p, opts.Binary(spec, p), opts.Version, annotations)
		if err != nil {
			return nil, err
		}
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return mutate.Annotations(idx, annotations).(v1.ImageIndex), nil
}

func buildImage(spec Spec, p v1.Platform, binary, version string, labels map[string]string) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("%s for %s: %w", spec.Name, p.String(), err)
	}
	if err := checkBinary(bin, p, spec, version); err != nil {
		return nil, fmt.Errorf("%s for %s: %s: %w", spec.Name, p.String(), binary, err)
	}
	layerTar, err := rootfs(spec.Path, bin)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "ballast build/image: " + spec.Binary + " -> " + spec.Path}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: epoch}
	cf.Author = Source
	cf.Config.Entrypoint = []string{spec.Path}
	cf.Config.User = User
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/bin"}
	cf.Config.Labels = labels
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// rootfs is the image's only layer: the directories, /etc/passwd and
// /etc/group naming the non-root user (so that tools resolving the user find
// it), a world-writable /tmp, and the binary.
func rootfs(binPath string, bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	var addDirs func(dir string, mode int64) error
	addDirs = func(dir string, mode int64) error {
		if dir == "/" || dir == "." || dirs[dir] {
			return nil
		}
		if err := addDirs(path.Dir(dir), 0o755); err != nil {
			return err
		}
		dirs[dir] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(dir, "/") + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(p string, mode int64, data []byte) error {
		if err := addDirs(path.Dir(p), 0o755); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := addDirs("/tmp", 0o1777); err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, UID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", UID)
	for _, f := range []struct {
		path string
		mode int64
		data []byte
	}{
		{"/etc/passwd", 0o644, []byte(passwd)},
		{"/etc/group", 0o644, []byte(group)},
		{binPath, 0o755, bin},
	} {
		if err := file(f.path, f.mode, f.data); err != nil {
			return nil, err
		}
	}
	if err := addDirs("/home/nonroot", 0o700); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteLayout writes idx as the OCI layout dir (replacing what was there),
// its index entry annotated with the image reference.
func WriteLayout(dir, ref string, idx v1.ImageIndex) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{LabelRefName: ref}))
}

// Push pushes idx to ref with the credentials of the local docker config
// (or a credential helper it names), as ko and crane do.
func Push(ctx context.Context, ref string, idx v1.ImageIndex) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return err
	}
	return remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
}

// Open reads back the index written by WriteLayout, with its reference.
func Open(dir string) (v1.ImageIndex, string, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, "", err
	}
	outer, err := p.ImageIndex()
	if err != nil {
		return nil, "", err
	}
	m, err := outer.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	if len(m.Manifests) != 1 {
		return nil, "", fmt.Errorf("%s: %d index entries, want 1", dir, len(m.Manifests))
	}
	idx, err := outer.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return nil, "", err
	}
	return idx, m.Manifests[0].Annotations[LabelRefName], nil
}

// ReadFile returns the file at p in img's layers (the last one wins).
func ReadFile(img v1.Image, p string) ([]byte, *tar.Header, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, nil, err
	}
	want := strings.TrimPrefix(p, "/")
	var data []byte
	var hdr *tar.Header
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, nil, err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				rc.Close()
				return nil, nil, err
			}
			if strings.TrimPrefix(h.Name, "./") == want {
				if data, err = io.ReadAll(tr); err != nil {
					rc.Close()
					return nil, nil, err
				}
				hdr = h
			}
		}
		rc.Close()
	}
	if hdr == nil {
		return nil, nil, fmt.Errorf("no %s in the image", p)
	}
	return data, hdr, nil
}
