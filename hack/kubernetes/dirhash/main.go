// Command dirhash prints the go.sum hash ("h1:") of a module's directory:
// the Hash1 of golang.org/x/mod/sumdb/dirhash, the SHA-256 of the lines
// "<hex SHA-256 of the file>  <module>@<version>/<path>\n" sorted by path.
//
// Usage: dirhash <dir> <module>@<version>
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

func main() {
	if len(os.Args) != 3 || !strings.Contains(os.Args[2], "@") {
		fmt.Fprintln(os.Stderr, "usage: dirhash <dir> <module>@<version>")
		os.Exit(2)
	}
	h, err := hashDir(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "dirhash:", err)
		os.Exit(1)
	}
	fmt.Println(h)
}

func hashDir(dir, prefix string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symlink: a module holds none", path)
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	slices.Sort(files)
	summary := sha256.New()
	for _, f := range files {
		if strings.Contains(f, "\n") {
			return "", fmt.Errorf("file name %q contains a newline", f)
		}
		sum, err := fileSum(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(summary, "%x  %s\n", sum, prefix+"/"+f)
	}
	return "h1:" + base64.StdEncoding.EncodeToString(summary.Sum(nil)), nil
}

func fileSum(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
