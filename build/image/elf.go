package image

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

var machines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// VersionMark is what a binary built by `make image` for version holds in
// its data: the scheduler's Kubernetes version (LDFLAGS: gitVersion) ends
// in it; az-balancer's is the version itself.
func VersionMark(version string) string {
	return "+ballast." + version
}

// checkBinary makes sure bin runs on p from scratch and is the one built
// for version: a Linux ELF file for p's architecture, statically linked (no
// interpreter, no dynamic section, no shared libraries: the image has no
// libc), whose Go build info names p's GOOS and GOARCH and no cgo, and which
// holds the version (a stale binary left under bin/ is refused). The build
// info cannot tell the version: go build -trimpath leaves -ldflags out of
// it (go.dev/issue/52372), so the version set with -X is looked for in the
// binary's data: for the scheduler its Kubernetes version
// "v1.37.2+ballast.<version>", for az-balancer the version.
func checkBinary(bin []byte, p v1.Platform, spec Spec, version string) error {
	want, ok := machines[p.Architecture]
	if p.OS != "linux" || !ok {
		return fmt.Errorf("platform %s is not supported (linux/amd64, linux/arm64)", p.String())
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("built for %s, not %s", f.Machine, p.Architecture)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			return fmt.Errorf("dynamically linked (%s); build with CGO_ENABLED=0", prog.Type)
		}
	}
	if f.Section(".dynamic") != nil {
		return fmt.Errorf("dynamically linked (a .dynamic section); build with CGO_ENABLED=0")
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v; build with CGO_ENABLED=0", libs)
	}
	info, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("no Go build info: %w", err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOOS"] != p.OS || settings["GOARCH"] != p.Architecture || settings["CGO_ENABLED"] != "0" {
		return fmt.Errorf("built for GOOS=%s GOARCH=%s CGO_ENABLED=%s, not %s with CGO_ENABLED=0",
			settings["GOOS"], settings["GOARCH"], settings["CGO_ENABLED"], p.String())
	}
	mark := version
	if spec.Binary == "scheduler" {
		mark = VersionMark(version)
	}
	if !bytes.Contains(bin, []byte(mark)) {
		return fmt.Errorf("not built with version %s (no %q in it); rebuild it with make image VERSION=%s", version, mark, version)
	}
	return nil
}
