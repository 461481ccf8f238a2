package shapes

import (
	"cmp"
	"sync"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
)

// DeviceClasses is the set of extended resource names that DeviceClasses map,
// kept as the scheduler's extended-resource cache keeps it (DRAExtendedResource,
// dynamic-resource-allocation deviceclass/extendedresourcecache, v0.37.2):
// every class maps its implicit name deviceclass.resource.kubernetes.io/<class>
// and, when set, its spec.extendedResourceName. NodeResourcesFit hands such a
// resource to DynamicResources on every node that does not advertise it, so
// its requests are no static fact there. The cache's rules on a clash are
// followed to the letter, quirks included, because the scheduler's verdict
// follows them: when two classes map one name, the newer class (then the
// lower name) holds it and an older class's add or update changes nothing;
// deleting either class, or an update that drops the name, unmaps the name
// even though the other class still maps it. The implicit names cannot clash
// (API validation). It is safe for concurrent use; a nil *DeviceClasses maps
// nothing.
type DeviceClasses struct {
	mu sync.RWMutex
	// seen is the last object of each class: the informer's old object on
	// its next update.
	seen map[string]*resourceapi.DeviceClass
	// byName is the cache's resourceName2class.
	byName map[v1.ResourceName]*resourceapi.DeviceClass
}

// NewDeviceClasses returns an empty set.
func NewDeviceClasses() *DeviceClasses {
	return &DeviceClasses{seen: map[string]*resourceapi.DeviceClass{}, byName: map[v1.ResourceName]*resourceapi.DeviceClass{}}
}

// ImplicitExtendedResourceName is the name every DeviceClass maps.
func ImplicitExtendedResourceName(class string) v1.ResourceName {
	return v1.ResourceName(resourceapi.ResourceDeviceClassPrefix + class)
}

// Upsert records an added or updated class. It reports whether the set of
// mapped names changed.
func (d *DeviceClasses) Upsert(dc *resourceapi.DeviceClass) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.seen[dc.Name]
	d.seen[dc.Name] = dc
	if n := dc.Spec.ExtendedResourceName; n != nil {
		if holder := d.byName[v1.ResourceName(*n)]; holder != nil {
			switch cmp.Compare(dc.CreationTimestamp.UnixNano(), holder.CreationTimestamp.UnixNano()) {
			case -1:
				return false
			case 0:
				if dc.Name >= holder.Name {
					return false
				}
			}
		}
	}
	changed := false
	if old != nil {
		changed = d.unmapLocked(old)
	}
	if n := dc.Spec.ExtendedResourceName; n != nil {
		changed = d.mapLocked(v1.ResourceName(*n), dc) || changed
	}
	return d.mapLocked(ImplicitExtendedResourceName(dc.Name), dc) || changed
}

// Delete forgets a deleted class (its last object). It reports whether the
// set of mapped names changed.
func (d *DeviceClasses) Delete(dc *resourceapi.DeviceClass) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.seen, dc.Name)
	return d.unmapLocked(dc)
}

func (d *DeviceClasses) mapLocked(name v1.ResourceName, dc *resourceapi.DeviceClass) bool {
	_, had := d.byName[name]
	d.byName[name] = dc
	return !had
}

// unmapLocked removes the names dc maps, whichever class holds them.
func (d *DeviceClasses) unmapLocked(dc *resourceapi.DeviceClass) bool {
	names := []v1.ResourceName{ImplicitExtendedResourceName(dc.Name)}
	if n := dc.Spec.ExtendedResourceName; n != nil {
		names = append(names, v1.ResourceName(*n))
	}
	changed := false
	for _, n := range names {
		if _, had := d.byName[n]; had {
			delete(d.byName, n)
			changed = true
		}
	}
	return changed
}

// Maps reports whether some DeviceClass maps the resource name.
func (d *DeviceClasses) Maps(name v1.ResourceName) bool {
	if d == nil {
		return false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.byName[name] != nil
}

// Len returns the number of classes.
func (d *DeviceClasses) Len() int {
	if d == nil {
		return 0
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.seen)
}
