package rule

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// maxStrictDepth bounds object/array nesting; no input PacketScope decodes
// (a rule, an Alertmanager payload, an LLM tool call) comes near it.
const maxStrictDepth = 32

// UnmarshalStrict decodes JSON into v like json.Unmarshal, but refuses what
// encoding/json lets through and a second reader might take differently:
//
//   - a key given twice in one object (encoding/json keeps the last one),
//   - a key that differs from a struct field's name only by case or Unicode
//     folding ("Action", "ſrc"): encoding/json folds it onto the field,
//   - a key no struct field has,
//   - anything but white space after the value ("{...}}]]").
//
// The error is a *FieldError naming the key by its path ("match.src"), or
// "body" for malformed or trailing input. Maps and values whose type decodes
// itself (json.Unmarshaler) accept any keys, but still no duplicates.
func UnmarshalStrict(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("unmarshal strict: need a non-nil pointer")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	w := strictWalker{dec: dec}
	if err := w.value(rv.Type().Elem(), "", 0); err != nil {
		return err
	}
	if rest := bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return FieldErrorf("body", "trailing data after the JSON value at byte %d", dec.InputOffset())
	}
	// The shape is known good: the standard decoder now only converts values.
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return FieldErrorf(te.Field, "must be a JSON %s, not %s", te.Type.Kind(), te.Value)
		}
		return FieldErrorf("body", "invalid JSON: %v", err)
	}
	return nil
}

// strictWalker reads the token stream once and checks each object's keys
// against the Go type it will be decoded into.
type strictWalker struct{ dec *json.Decoder }

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// value consumes one JSON value; t is the Go type it decodes into (nil when
// unknown: any keys are allowed below it, duplicates still are not).
func (w *strictWalker) value(t reflect.Type, path string, depth int) error {
	tok, err := w.dec.Token()
	if err != nil {
		if err == io.EOF {
			return FieldErrorf("body", "empty or truncated JSON")
		}
		return FieldErrorf("body", "invalid JSON: %v", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // scalar: json.Unmarshal checks its type
	}
	if depth >= maxStrictDepth {
		return FieldErrorf(orBody(path), "nested deeper than %d levels", maxStrictDepth)
	}
	t = indirect(t)
	switch d {
	case '{':
		return w.object(t, path, depth)
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; w.dec.More(); i++ {
			if err := w.value(elem, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
		return w.closing()
	}
	return FieldErrorf("body", "invalid JSON: unexpected %v", d)
}

func (w *strictWalker) object(t reflect.Type, path string, depth int) error {
	var fields map[string]reflect.Type
	checkNames := t != nil && t.Kind() == reflect.Struct
	if checkNames {
		fields = jsonFields(t)
	}
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return FieldErrorf("body", "invalid JSON: %v", err)
		}
		key := tok.(string) // the decoder guarantees a string key here
		keyPath := joinPath(path, key)
		if seen[key] {
			return FieldErrorf(keyPath, "duplicate key")
		}
		seen[key] = true
		var child reflect.Type
		switch {
		case checkNames:
			ft, ok := fields[key]
			if !ok {
				for name := range fields {
					if strings.EqualFold(name, key) {
						return FieldErrorf(keyPath, "unknown field; the field is spelled %q (case matters)", name)
					}
				}
				return FieldErrorf(keyPath, "unknown field")
			}
			child = ft
		case t != nil && t.Kind() == reflect.Map:
			child = t.Elem()
		}
		if err := w.value(child, keyPath, depth+1); err != nil {
			return err
		}
	}
	return w.closing()
}

// closing consumes the '}' or ']' that ends the current object or array.
func (w *strictWalker) closing() error {
	if _, err := w.dec.Token(); err != nil {
		return FieldErrorf("body", "invalid JSON: %v", err)
	}
	return nil
}

// indirect returns the type whose JSON shape the walker can check, or nil
// when the type decodes itself or is an interface.
func indirect(t reflect.Type) reflect.Type {
	for t != nil {
		if t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) ||
			t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
			return nil
		}
		switch t.Kind() {
		case reflect.Pointer:
			t = t.Elem()
		case reflect.Interface:
			return nil
		default:
			return t
		}
	}
	return nil
}

// jsonFields maps the JSON names encoding/json uses for struct t (tag name
// or Go name; embedded structs' fields promoted) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, typ := range jsonFields(ft) {
					if _, ok := out[n]; !ok {
						out[n] = typ
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orBody(path string) string {
	if path == "" {
		return "body"
	}
	return path
}
