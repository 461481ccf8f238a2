// Package strict decodes YAML or JSON configuration case-sensitively,
// refusing unknown and duplicate fields, and names the field a value is
// wrong in.
package strict

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Unmarshal decodes raw (YAML or JSON) into the struct pointed to by into.
func Unmarshal(raw []byte, into any) error {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(js, into)
	if err != nil {
		return nameField(js, into, err)
	}
	return errors.Join(strictErrs...)
}

// nameField finds the top-level field whose value alone fails to decode:
// some decoders (durations, quantities) report a value but not its field.
func nameField(js []byte, into any, err error) error {
	var fields map[string]json.RawMessage
	if json.Unmarshal(js, &fields) != nil {
		return err
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		single, _ := json.Marshal(map[string]json.RawMessage{k: fields[k]})
		probe := reflect.New(reflect.TypeOf(into).Elem()).Interface()
		if _, e := kjson.UnmarshalStrict(single, probe); e != nil {
			return fmt.Errorf("field %q: %w", k, e)
		}
	}
	return err
}
