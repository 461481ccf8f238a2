// Package version is Ballast's own version, set at build time by the Makefile
// (-ldflags -X) to the tag of the images it builds.
package version

var (
	// version is Ballast's version, e.g. v0.1.0; "dev" in an unflagged build.
	version = "dev"
	// revision is the git commit the binary was built from.
	revision = "unknown"
)

// Version returns Ballast's version.
func Version() string { return version }

// Revision returns the git commit the binary was built from.
func Revision() string { return revision }
