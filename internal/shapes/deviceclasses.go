package shapes

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
)

// DeviceClasses is the set of extended resource names that DeviceClasses map,
// as the scheduler's extended-resource cache keeps it (DRAExtendedResource):
// every class maps its implicit name deviceclass.resource.kubernetes.io/<class>
// and, when set, its spec.extendedResourceName. NodeResourcesFit hands such a
// resource to DynamicResources on every node that does not advertise it, so
// its requests are no static fact there. It is safe for concurrent use; a nil
// *DeviceClasses maps nothing.
type DeviceClasses struct {
	mu sync.RWMutex
	// byClass is what each class maps; names counts the classes per name, so
	// that two classes mapping one name (a migration) keep it until both go.
	byClass map[string][]v1.ResourceName
	names   map[v1.ResourceName]int
}

// NewDeviceClasses returns an empty set.
func NewDeviceClasses() *DeviceClasses {
	return &DeviceClasses{byClass: map[string][]v1.ResourceName{}, names: map[v1.ResourceName]int{}}
}

// ImplicitExtendedResourceName is the name every DeviceClass maps.
func ImplicitExtendedResourceName(class string) v1.ResourceName {
	return v1.ResourceName(resourceapi.ResourceDeviceClassPrefix + class)
}

func mappedNames(dc *resourceapi.DeviceClass) []v1.ResourceName {
	names := []v1.ResourceName{ImplicitExtendedResourceName(dc.Name)}
	if n := dc.Spec.ExtendedResourceName; n != nil && *n != "" {
		names = append(names, v1.ResourceName(*n))
	}
	return names
}

// Upsert records what dc maps. It reports whether the mapped names changed.
func (d *DeviceClasses) Upsert(dc *resourceapi.DeviceClass) bool {
	names := mappedNames(dc)
	d.mu.Lock()
	defer d.mu.Unlock()
	old, had := d.byClass[dc.Name]
	if had && equalNames(old, names) {
		return false
	}
	d.removeLocked(dc.Name)
	d.byClass[dc.Name] = names
	for _, n := range names {
		d.names[n]++
	}
	return true
}

// Delete forgets the class name. It reports whether it was known.
func (d *DeviceClasses) Delete(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.removeLocked(name)
}

func (d *DeviceClasses) removeLocked(class string) bool {
	old, had := d.byClass[class]
	if !had {
		return false
	}
	delete(d.byClass, class)
	for _, n := range old {
		if d.names[n]--; d.names[n] <= 0 {
			delete(d.names, n)
		}
	}
	return true
}

// Maps reports whether some DeviceClass maps the resource name.
func (d *DeviceClasses) Maps(name v1.ResourceName) bool {
	if d == nil {
		return false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.names[name] > 0
}

// Len returns the number of classes.
func (d *DeviceClasses) Len() int {
	if d == nil {
		return 0
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.byClass)
}

func equalNames(a, b []v1.ResourceName) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
