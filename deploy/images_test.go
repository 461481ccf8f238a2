package deploy_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/ballast-k8s/ballast/build/image"
)

// makefileVersion is the VERSION `make image` tags the images with by default.
func makefileVersion(t *testing.T) string {
	t.Helper()
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VERSION \?= (\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("no `VERSION ?= ...` in the Makefile")
	}
	return string(m[1])
}

// Every Ballast image deploy/ runs is one `make image` builds, with the tag
// it builds by default, and the container runs the image's binary.
func TestDeployedImagesAreTheBuiltOnes(t *testing.T) {
	version := makefileVersion(t)
	specs := map[string]image.Spec{}
	for _, s := range image.Images {
		specs[image.Ref(image.DefaultRepo, s, version)] = s
	}
	var containers []v1.Container
	for _, dir := range kustomizations {
		for _, o := range render(t, dir) {
			if o.GetKind() != "Deployment" {
				continue
			}
			containers = append(containers, convert[appsv1.Deployment](t, o).Spec.Template.Spec.Containers...)
		}
	}
	data, err := os.ReadFile("scheduler-replacement/kube-scheduler.yaml")
	if err != nil {
		t.Fatal(err)
	}
	static := &v1.Pod{}
	if err := yaml.UnmarshalStrict(data, static); err != nil {
		t.Fatal(err)
	}
	containers = append(containers, static.Spec.Containers...)

	seen := map[string]bool{}
	for _, c := range containers {
		if !strings.HasPrefix(c.Image, image.DefaultRepo+"/") {
			continue
		}
		spec, ok := specs[c.Image]
		if !ok {
			t.Errorf("container %s runs %s; make image builds %v", c.Name, c.Image, keys(specs))
			continue
		}
		seen[spec.Name] = true
		if len(c.Command) > 0 && c.Command[0] != spec.Path {
			t.Errorf("container %s runs %s, but the binary of %s is %s", c.Name, c.Command[0], c.Image, spec.Path)
		}
	}
	for _, s := range image.Images {
		if !seen[s.Name] {
			t.Errorf("no manifest under deploy/ runs %s", image.Ref(image.DefaultRepo, s, version))
		}
	}
}
