package image_test

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ballast-k8s/ballast/build/image"
)

const k8sVersion = "v1.37.2"

// repoRoot is the module root, two directories up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// binaries returns the host's binaries and the version they were built with:
// those `make test` built (BALLAST_<NAME>_BIN, BALLAST_VERSION), else fresh
// builds with the Makefile's version flags and a test version.
func binaries(t *testing.T) (map[string]string, string) {
	t.Helper()
	env := map[string]string{"scheduler": "BALLAST_SCHEDULER_BIN", "az-balancer": "BALLAST_AZ_BALANCER_BIN"}
	version := os.Getenv("BALLAST_VERSION")
	bins := map[string]string{}
	for name, v := range env {
		if p := os.Getenv(v); p != "" && version != "" {
			bins[name] = p
		}
	}
	if len(bins) == len(env) {
		return bins, version
	}
	version = "v0.0.0-imagetest"
	dir := t.TempDir()
	ldflags := "-s -w -X k8s.io/component-base/version.gitVersion=" + k8sVersion + "+ballast." + version +
		" -X github.com/ballast-k8s/ballast/internal/version.version=" + version +
		" -X github.com/ballast-k8s/ballast/internal/version.revision=0123456789abcdef"
	for name := range env {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "./cmd/"+name)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", name, err, b)
		}
		bins[name] = out
	}
	return bins, version
}

// wantVersion is what `<binary> --version` prints for version.
func wantVersion(spec image.Spec, version string) string {
	if spec.Binary == "scheduler" {
		return "Kubernetes " + k8sVersion + "+ballast." + version
	}
	return "az-balancer " + version + " "
}

// checkIndex opens the OCI layout at dir and checks every image in it:
// platforms, config, labels, and the binary (an ELF file of the platform's
// architecture, statically linked). It returns the host platform's binary.
func checkIndex(t *testing.T, dir string, spec image.Spec, repo, version, revision string, platforms []v1.Platform) []byte {
	t.Helper()
	idx, ref, err := image.Open(dir)
	if err != nil {
		t.Fatalf("opening %s: %v", dir, err)
	}
	if want := image.Ref(repo, spec, version); ref != want {
		t.Errorf("%s: reference %q, want %q", dir, ref, want)
	}
	// The reference's tag is the version: what deploy/ names, what the binary prints.
	if _, tag, _ := strings.Cut(ref[strings.LastIndex(ref, "/"):], ":"); tag != version {
		t.Errorf("%s: tag %q, want %q", dir, tag, version)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		image.LabelSource: image.Source, image.LabelVersion: version, image.LabelRevision: revision, image.LabelTitle: spec.Name,
	}
	if diff := cmp.Diff(wantLabels, m.Annotations); diff != "" {
		t.Errorf("%s: index annotations (-want, +got):\n%s", spec.Name, diff)
	}
	var got []string
	var host []byte
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Fatalf("%s: index entry %s has no platform", spec.Name, d.Digest)
		}
		p := *d.Platform
		got = append(got, p.String())
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != p.OS || cf.Architecture != p.Architecture {
			t.Errorf("%s %s: config says %s/%s", spec.Name, p.String(), cf.OS, cf.Architecture)
		}
		if diff := cmp.Diff([]string{spec.Path}, cf.Config.Entrypoint); diff != "" {
			t.Errorf("%s %s: entrypoint (-want, +got):\n%s", spec.Name, p.String(), diff)
		}
		if cf.Config.User != "65532:65532" {
			t.Errorf("%s %s: user %q, want 65532:65532 (non-root, numeric for runAsNonRoot)", spec.Name, p.String(), cf.Config.User)
		}
		if diff := cmp.Diff(wantLabels, cf.Config.Labels); diff != "" {
			t.Errorf("%s %s: labels (-want, +got):\n%s", spec.Name, p.String(), diff)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if len(layers) != 1 {
			t.Errorf("%s %s: %d layers, want 1 (FROM scratch, no base)", spec.Name, p.String(), len(layers))
		}
		bin, hdr, err := image.ReadFile(img, spec.Path)
		if err != nil {
			t.Fatalf("%s %s: %v", spec.Name, p.String(), err)
		}
		if hdr.Mode&0o111 == 0 || hdr.Uid != 0 {
			t.Errorf("%s %s: %s mode %o uid %d, want executable and owned by root (not writable by the user)", spec.Name, p.String(), spec.Path, hdr.Mode, hdr.Uid)
		}
		checkELF(t, spec.Name+" "+p.String(), bin, p.Architecture, version)
		passwd, _, err := image.ReadFile(img, "/etc/passwd")
		if err != nil || !strings.Contains(string(passwd), ":65532:65532:") {
			t.Errorf("%s %s: /etc/passwd %q (%v) has no user 65532", spec.Name, p.String(), passwd, err)
		}
		if p.OS == runtime.GOOS && p.Architecture == runtime.GOARCH {
			host = bin
		}
	}
	var want []string
	for _, p := range platforms {
		want = append(want, p.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: platforms (-want, +got):\n%s", spec.Name, diff)
	}
	return host
}

// checkELF checks a binary of an image without running it (the arm64 one
// cannot run here): an ELF file for arch, static (no interpreter, no
// dynamic section: the image has no libc), and its Go build info names
// linux/arch, no cgo, and the version the image is tagged with.
func checkELF(t *testing.T, what string, bin []byte, arch, version string) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != want {
		t.Errorf("%s: ELF machine %s, want %s", what, f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: dynamically linked (%s); the image has no libc", what, p.Type)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Errorf("%s: has a .dynamic section; the image has no libc", what)
	}
	info, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s: Go build info: %v", what, err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOOS"] != "linux" || settings["GOARCH"] != arch || settings["CGO_ENABLED"] != "0" {
		t.Errorf("%s: built with GOOS=%s GOARCH=%s CGO_ENABLED=%s, want linux, %s, 0", what, settings["GOOS"], settings["GOARCH"], settings["CGO_ENABLED"], arch)
	}
	// go build -trimpath leaves -ldflags out of the build info (go.dev/issue/52372),
	// so the version set with -X is looked for in the binary's data.
	if !bytes.Contains(bin, []byte(image.VersionMark(version))) {
		t.Errorf("%s: the version %s is not in the binary", what, version)
	}
}

// runVersion runs bin (extracted from an image) with --version.
func runVersion(t *testing.T, name string, bin []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", name, err, out)
	}
	return string(out)
}

// Each image is built from the binaries `make test` built, as `make image`
// builds it, written as an OCI layout, and read back: its config, labels and
// user, and the binary inside printing the version the image is tagged with.
func TestImagesFromBuiltBinaries(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatalf("images are linux images; run this test on linux, not %s", runtime.GOOS)
	}
	bins, version := binaries(t)
	host := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	const repo, revision = "registry.test/ballast", "0123456789abcdef"
	opts := image.Options{
		Repo: repo, Version: version, Revision: revision, Platforms: []v1.Platform{host},
		Binary: func(s image.Spec, p v1.Platform) string { return bins[s.Binary] },
	}
	out := t.TempDir()
	for _, spec := range image.Images {
		t.Run(spec.Name, func(t *testing.T) {
			idx, err := image.Build(spec, opts)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(out, spec.Name)
			if err := image.WriteLayout(dir, image.Ref(repo, spec, version), idx); err != nil {
				t.Fatal(err)
			}
			bin := checkIndex(t, dir, spec, repo, version, revision, opts.Platforms)
			got := runVersion(t, spec.Binary, bin)
			if !strings.HasPrefix(got, wantVersion(spec, version)) {
				t.Errorf("%s --version printed %q, want it to start with %q (the image's tag %s)", spec.Path, got, wantVersion(spec, version), version)
			}
		})
	}
}

// The images `make image` wrote under bin/images, when it ran: every platform
// of both images is checked, and the host's binary is run.
func TestImagesOfMakeImage(t *testing.T) {
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "bin", "images")); err != nil {
		t.Logf("no bin/images (make image has not run): nothing more to check than TestImagesFromBuiltBinaries")
		return
	}
	for _, spec := range image.Images {
		t.Run(spec.Name, func(t *testing.T) {
			dir := filepath.Join(root, "bin", "images", spec.Name)
			_, ref, err := image.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			version := ref[strings.LastIndex(ref, ":")+1:]
			repo := strings.TrimSuffix(ref[:strings.LastIndex(ref, ":")], "/"+spec.Name)
			idx, _, _ := image.Open(dir)
			m, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			bin := checkIndex(t, dir, spec, repo, version, m.Annotations[image.LabelRevision], image.Platforms)
			if bin == nil {
				t.Fatalf("no %s/%s image to run", runtime.GOOS, runtime.GOARCH)
			}
			if got := runVersion(t, spec.Binary, bin); !strings.HasPrefix(got, wantVersion(spec, version)) {
				t.Errorf("%s --version printed %q, want it to start with %q", spec.Path, got, wantVersion(spec, version))
			}
		})
	}
}

// Bad input is a clear error, and nothing is written.
func TestBuildRejects(t *testing.T) {
	good := filepath.Join(t.TempDir(), "not-elf")
	if err := os.WriteFile(good, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := image.Images[0]
	base := image.Options{Repo: "registry.test/ballast", Version: "v1.0.0", Revision: "r", Platforms: image.Platforms,
		Binary: func(image.Spec, v1.Platform) string { return good }}
	for name, tc := range map[string]struct {
		mod  func(*image.Options)
		want string
	}{
		"version with +": {func(o *image.Options) { o.Version = "v1.0.0+meta" }, "not a valid image tag"},
		"no platforms":   {func(o *image.Options) { o.Platforms = nil }, "no platforms"},
		"bad repo":       {func(o *image.Options) { o.Repo = "UPPER/case" }, "repository"},
		"unsupported":    {func(o *image.Options) { o.Platforms = []v1.Platform{{OS: "windows", Architecture: "amd64"}} }, "not supported"},
		"not a binary":   {func(o *image.Options) {}, "not an ELF binary"},
		"missing binary": {func(o *image.Options) { o.Binary = func(image.Spec, v1.Platform) string { return "/nonexistent" } }, "no such file"},
	} {
		o := base
		tc.mod(&o)
		_, err := image.Build(spec, o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one with %q", name, err, tc.want)
		}
	}
}

// tinyBinary builds a small static Go program for linux/arch with the
// version flags `make image` sets (ballastVersion "" sets none): a binary of
// the other architecture in seconds, where the scheduler takes minutes.
func tinyBinary(t *testing.T, arch, ballastVersion string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nvar version = \"dev\"\n\nfunc main() { println(version) }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ldflags := "-s -w"
	if ballastVersion != "" {
		// As the scheduler's Kubernetes version (LDFLAGS: gitVersion).
		ldflags += " -X main.version=" + k8sVersion + "+ballast." + ballastVersion
	}
	out := filepath.Join(dir, "tiny")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-trimpath", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a tiny %s binary: %v\n%s", arch, err, b)
	}
	return out
}

// The binary of each platform is checked before it goes in: an ELF file of
// the platform's machine, static (no interpreter, no dynamic section), whose
// Go build info names the platform's GOOS and GOARCH and carries the version
// the image is tagged with. The arm64 half this way, on a machine that
// cannot run arm64: a stale binary under bin/linux-arm64 is refused.
func TestBuildChecksOtherArchitecture(t *testing.T) {
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64"}
	good := tinyBinary(t, "arm64", "v1.2.3")
	spec := image.Images[0]
	opts := image.Options{Repo: "registry.test/ballast", Version: "v1.2.3", Revision: "r", Platforms: []v1.Platform{arm64},
		Binary: func(image.Spec, v1.Platform) string { return good }}
	idx, err := image.Build(spec, opts)
	if err != nil {
		t.Fatalf("building an arm64 image: %v", err)
	}
	dir := filepath.Join(t.TempDir(), spec.Name)
	if err := image.WriteLayout(dir, image.Ref(opts.Repo, spec, opts.Version), idx); err != nil {
		t.Fatal(err)
	}
	if host := checkIndex(t, dir, spec, opts.Repo, opts.Version, opts.Revision, opts.Platforms); host != nil && runtime.GOARCH != "arm64" {
		t.Errorf("an arm64 image returned as the host's (%s)", runtime.GOARCH)
	}

	for name, tc := range map[string]struct {
		binary, version, want string
	}{
		"stale version": {good, "v1.2.4", "built with version"},
		"no version":    {tinyBinary(t, "arm64", ""), "v1.2.3", "built with version"},
		"other machine": {tinyBinary(t, "amd64", "v1.2.3"), "v1.2.3", "built for"},
	} {
		o := opts
		o.Version = tc.version
		o.Binary = func(image.Spec, v1.Platform) string { return tc.binary }
		if _, err := image.Build(spec, o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one with %q", name, err, tc.want)
		}
	}
}
