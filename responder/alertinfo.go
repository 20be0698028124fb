package responder

import (
	"maps"
	"slices"
)

// An alert's labels and annotations are text whoever reaches Alertmanager
// wrote. They are stored (audit trail, decisions, the model's prompt) only
// after the same sanitizing as the prompt, within these bounds; what is
// dropped or cut is counted in AlertInfo.Truncated.
const (
	maxAlertLabels      = 64
	maxAlertAnnotations = 16
	maxLabelValueLen    = 512
	maxAnnotationLen    = 1024
)

// alertInfoOf is the sanitized, bounded record of a webhook alert.
func alertInfoOf(a WebhookAlert) AlertInfo {
	info := AlertInfo{Fingerprint: SanitizeIdent(a.Fingerprint), Status: a.Status, StartsAt: a.StartsAt}
	info.Labels, info.Truncated = boundedKV(a.Labels, maxAlertLabels, maxLabelValueLen)
	var n int
	info.Annotations, n = boundedKV(a.Annotations, maxAlertAnnotations, maxAnnotationLen)
	info.Truncated += n
	info.Name = info.Labels["alertname"]
	if info.Fingerprint == "" {
		info.Fingerprint = labelsFingerprint(a.Labels)
	}
	return info
}

// boundedKV keeps at most maxN entries (in key order), keys as identifiers,
// values as one printable line of at most maxLen bytes; it returns how many
// entries it dropped or changed.
func boundedKV(in map[string]string, maxN, maxLen int) (map[string]string, int) {
	if len(in) == 0 {
		return nil, 0
	}
	out := make(map[string]string, min(len(in), maxN))
	changed := 0
	for _, k := range slices.Sorted(maps.Keys(in)) {
		sk := SanitizeIdent(k)
		if len(out) >= maxN || sk == "" {
			changed++
			continue
		}
		v := SanitizeText(in[k], maxLen)
		if sk != k || v != in[k] {
			changed++
		}
		out[sk] = v
	}
	return out, changed
}
