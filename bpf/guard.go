package bpf

import "github.com/cilium/ebpf"

// Types of the XDP guard's maps, shared with guard.bpf.c (see guard.h).
type (
	GuardBitmap     = guardGuardBitmap
	GuardNames      = guardGuardNames
	GuardConfig     = guardGuardConfig
	GuardKey4       = guardGuardKey4
	GuardKey6       = guardGuardKey6
	GuardRuleMeta   = guardGuardRuleMeta
	GuardRuleStats  = guardGuardRuleStats
	GuardIfaceStats = guardGuardIfaceStats
	GuardSample     = guardGuardSample
	GuardBucket     = guardGuardBucket
	GuardDefKey     = guardGuardDefKey
	GuardDefChunk   = guardGuardDefChunk
	GuardObjects    = guardObjects
	GuardMaps       = guardMaps
)

// Sizes fixed at compile time in guard.h (enum guard_limits). Untyped, so
// they mix with any integer type; guardLimitsAgree below fails the build if
// guard.h changes and these do not.
const (
	GuardFPRules     = 1024   // fingerprint rules (bitmap width)
	GuardCIDRRules   = 131072 // source-CIDR-only rules
	GuardFPPlens     = 8
	GuardCIDRPlens   = 16
	GuardDefChunkLen = 248
	GuardIfaceSlots  = 4096
	// The address prefilter has 2^GuardPrefilterShift u64 words.
	GuardPrefilterShift = 18
)

// Indexes of fp_wild (enum guard_wild).
const (
	GuardWildSport  = uint32(guardGuardWildWILD_SPORT)
	GuardWildDport  = uint32(guardGuardWildWILD_DPORT)
	GuardWildLength = uint32(guardGuardWildWILD_LENGTH)
	GuardWildWindow = uint32(guardGuardWildWILD_WINDOW)
	GuardWildSrc4   = uint32(guardGuardWildWILD_SRC4)
	GuardWildSrc6   = uint32(guardGuardWildWILD_SRC6)
	GuardWildDst4   = uint32(guardGuardWildWILD_DST4)
	GuardWildDst6   = uint32(guardGuardWildWILD_DST6)
	GuardWildActive = uint32(guardGuardWildWILD_ACTIVE)
	GuardWildCount  = uint32(guardGuardWildWILD_COUNT)
)

// Verdicts (enum guard_verdict), the index of GuardIfaceStats.Actions.
const (
	GuardVerdictPass        = uint32(guardGuardVerdictVERDICT_PASS)
	GuardVerdictDrop        = uint32(guardGuardVerdictVERDICT_DROP)
	GuardVerdictRateLimited = uint32(guardGuardVerdictVERDICT_RATE_LIMITED)
	GuardVerdictMonitor     = uint32(guardGuardVerdictVERDICT_MONITOR)
)

// LoadGuardSpec returns the XDP guard's collection spec.
func LoadGuardSpec() (*ebpf.CollectionSpec, error) { return loadGuard() }

// Maps returns the guard's maps.
func (o *guardObjects) Maps() *GuardMaps { return &o.guardMaps }

// Open-addressing tables of the fingerprint address fields (guard.h).
type (
	GuardAddr4Entry = guardGuardAddr4Entry
	GuardAddr6Entry = guardGuardAddr6Entry
)

// Open-addressing tables of the source-CIDR rules (cidr_oa4/6), in front of
// the hash maps that hold every entry.
type (
	GuardCIDR4Entry = guardGuardCidr4Entry
	GuardCIDR6Entry = guardGuardCidr6Entry
)

const (
	GuardOAShift     = 13
	GuardCIDROAShift = 18
	GuardOAProbes    = 8
	GuardOAUsed      = 1
	GuardOAValid     = 2
)

// guardLimitsAgree does not compile unless every constant above equals the
// value bpf2go read from guard.bpf.o's BTF: an index is out of range for any
// difference but zero.
var guardLimitsAgree = [...]struct{}{
	[1]struct{}{}[GuardFPRules-int(guardGuardLimitsGUARD_FP_RULES)],
	[1]struct{}{}[GuardCIDRRules-int(guardGuardLimitsGUARD_CIDR_RULES)],
	[1]struct{}{}[GuardFPPlens-int(guardGuardLimitsGUARD_FP_PLENS)],
	[1]struct{}{}[GuardCIDRPlens-int(guardGuardLimitsGUARD_CIDR_PLENS)],
	[1]struct{}{}[GuardDefChunkLen-int(guardGuardLimitsGUARD_DEF_CHUNK)],
	[1]struct{}{}[GuardIfaceSlots-int(guardGuardLimitsGUARD_IFACE_SLOTS)],
	[1]struct{}{}[GuardPrefilterShift-int(guardGuardLimitsGUARD_PREFILTER_SHIFT)],
	[1]struct{}{}[GuardOAShift-int(guardGuardLimitsGUARD_OA_SHIFT)],
	[1]struct{}{}[GuardOAProbes-int(guardGuardLimitsGUARD_OA_PROBES)],
	[1]struct{}{}[GuardCIDROAShift-int(guardGuardLimitsGUARD_CIDR_OA_SHIFT)],
	[1]struct{}{}[GuardOAUsed-int(guardGuardOaFlagsOA_USED)],
	[1]struct{}{}[GuardOAValid-int(guardGuardOaFlagsOA_VALID)],
}

var _ = guardLimitsAgree
