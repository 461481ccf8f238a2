// Package docs_test checks the repository's markdown: every link stays inside
// the repository and points at a file (and heading) that exists. A user who
// clones the project has nothing else.
package docs_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	fence       = regexp.MustCompile("(?ms)^[ \t]*(```|~~~).*?^[ \t]*(```|~~~)[ \t]*$")
	inlineCode  = regexp.MustCompile("`[^`\n]*`")
	inlineLink  = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	refDef      = regexp.MustCompile(`(?m)^[ \t]{0,3}\[[^\]]+\]:[ \t]*<?(\S+?)>?(?:[ \t].*)?$`)
	autolink    = regexp.MustCompile(`<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]*)>`)
	bareURL     = regexp.MustCompile(`\b(?:https?|ftp)://[^\s)>\]]+|\bwww\.[a-z0-9-]+\.[a-z]`)
	scheme      = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
	heading     = regexp.MustCompile(`(?m)^#{1,6}[ \t]+(.+?)[ \t#]*$`)
	htmlAnchor  = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
	slugDropped = regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
)

// loopback addresses name the machine the reader runs a command on, not a
// place outside the repository (probes such as https://127.0.0.1:10259).
func loopback(u string) bool {
	for _, h := range []string{"://127.0.0.1", "://localhost", "://[::1]"} {
		if strings.Contains(u, h) {
			return true
		}
	}
	return false
}

// slug is GitHub's anchor of a heading: lower case, punctuation dropped,
// spaces to dashes.
func slug(h string) string {
	h = inlineCode.ReplaceAllStringFunc(h, func(s string) string { return strings.Trim(s, "`") })
	h = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(h, "$1")
	h = strings.ToLower(strings.TrimSpace(h))
	h = slugDropped.ReplaceAllString(h, "")
	return strings.ReplaceAll(h, " ", "-")
}

func anchors(doc string) []string {
	doc = fence.ReplaceAllString(doc, "")
	var out []string
	seen := map[string]int{}
	for _, m := range heading.FindAllStringSubmatch(doc, -1) {
		s := slug(m[1])
		if n := seen[s]; n > 0 {
			out = append(out, s+"-"+itoa(n))
		} else {
			out = append(out, s)
		}
		seen[s]++
	}
	for _, m := range htmlAnchor.FindAllStringSubmatch(doc, -1) {
		out = append(out, m[1])
	}
	return out
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// checkMarkdown returns one problem per bad link of the document at path
// (relative to root, with slashes).
func checkMarkdown(root, path, doc string, read func(string) (string, error), exists func(string) bool) []string {
	text := inlineCode.ReplaceAllString(fence.ReplaceAllString(doc, ""), "")
	var targets []string
	for _, re := range []*regexp.Regexp{inlineLink, refDef, autolink} {
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			targets = append(targets, m[1])
		}
	}
	var problems []string
	// URLs written out without link syntax are links on every renderer.
	rest := autolink.ReplaceAllString(inlineLink.ReplaceAllString(refDef.ReplaceAllString(text, ""), ""), "")
	for _, u := range bareURL.FindAllString(rest, -1) {
		if !loopback(u) {
			problems = append(problems, path+": links outside the repository: "+u)
		}
	}
	for _, target := range targets {
		switch {
		case target == "":
			problems = append(problems, path+": empty link target")
			continue
		case strings.HasPrefix(target, "//") || scheme.MatchString(target):
			if !loopback(target) {
				problems = append(problems, path+": links outside the repository: "+target)
			}
			continue
		case strings.HasPrefix(target, "/"):
			problems = append(problems, path+": absolute path "+target+" (only relative links work in a clone)")
			continue
		}
		file, frag, _ := strings.Cut(target, "#")
		resolved := path
		if file != "" {
			resolved = filepath.ToSlash(filepath.Join(filepath.Dir(path), file))
			if resolved == ".." || strings.HasPrefix(resolved, "../") {
				problems = append(problems, path+": links outside the repository: "+target)
				continue
			}
			if !exists(resolved) {
				problems = append(problems, path+": links to a missing file: "+target)
				continue
			}
		}
		if frag != "" && strings.HasSuffix(resolved, ".md") {
			other, err := read(resolved)
			if err != nil {
				problems = append(problems, path+": "+err.Error())
				continue
			}
			if !slices.Contains(anchors(other), frag) {
				problems = append(problems, path+": links to a missing heading: "+target)
			}
		}
	}
	return problems
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("%s is not the repository root: %v", root, err)
	}
	return root
}

// skipped directories hold no documents of the project: build output, VCS
// data, and copies of other projects' sources.
func skipped(name string) bool {
	return name == "bin" || name == "third_party" || name == "node_modules" || (strings.HasPrefix(name, ".") && name != ".")
}

func TestMarkdownLinksStayInsideTheRepository(t *testing.T) {
	root := repoRoot(t)
	read := func(rel string) (string, error) {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		return string(b), err
	}
	exists := func(rel string) bool {
		_, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel)))
		return err == nil
	}
	var docs int
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && skipped(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(d.Name(), ".md") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		doc, err := read(rel)
		if err != nil {
			return err
		}
		docs++
		for _, p := range checkMarkdown(root, rel, doc, read, exists) {
			t.Error(p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// README, deploy/README, the design, operations and node-groups guides at least.
	if docs < 5 {
		t.Fatalf("checked %d markdown files under %s, want the project's documents", docs, root)
	}
}

// The README links to the design, which is in the repository.
func TestReadmeLinksTheDesign(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "](docs/design.md)") {
		t.Error("README.md does not link docs/design.md")
	}
}

// The checker itself finds each kind of bad link, and accepts good ones.
func TestCheckMarkdownFindsBadLinks(t *testing.T) {
	files := map[string]string{
		"README.md":      "# Ballast\n\n## Using the scheduler\n",
		"docs/design.md": "# Design\n## The queue fix (being added)\n",
		"deploy/a.yaml":  "",
	}
	read := func(rel string) (string, error) {
		if s, ok := files[rel]; ok {
			return s, nil
		}
		return "", os.ErrNotExist
	}
	exists := func(rel string) bool { _, ok := files[rel]; return ok }
	for _, tc := range []struct {
		doc  string
		want string // substring of the one problem, or "" for none
	}{
		{"see [design](../../shared/DESIGN.md)", "outside the repository: ../../shared/DESIGN.md"},
		{"see [design](../../x.md)", "outside the repository"},
		{"see [upstream](https://github.com/kubernetes/kubernetes)", "outside the repository: https://github.com"},
		{"see <https://example.com/x>", "outside the repository: https://example.com/x"},
		{"see https://example.com/x for more", "outside the repository: https://example.com/x"},
		{"[ref]: http://example.com", "outside the repository: http://example.com"},
		{"see [x](/etc/passwd)", "absolute path"},
		{"see [ops](operations.md)", "missing file: operations.md"},
		{"see [q](design.md#the-queue-fix)", "missing heading: design.md#the-queue-fix"},
		{"see [q](design.md#the-queue-fix-being-added)", ""},
		{"see [r](../README.md#using-the-scheduler) and [d](../deploy/a.yaml)", ""},
		{"![img](<>)", "empty link target"},
		{"probe `https://example.com` in code, and\n```\ncurl https://example.com\n```\n", ""},
		{"probe https://127.0.0.1:10259/healthz", ""},
	} {
		got := checkMarkdown("/repo", "docs/x.md", tc.doc, read, exists)
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%q: problems %q, want none", tc.doc, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
			t.Errorf("%q: problems %q, want one with %q", tc.doc, got, tc.want)
		}
	}
}
