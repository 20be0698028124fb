package bpf

import "github.com/cilium/ebpf"

// Types of the XDP guard's maps, shared with guard.bpf.c (see guard.h).
type (
	GuardBitmap     = guardGuardBitmap
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

// Sizes fixed at compile time in guard.h.
const (
	GuardFPRules     = 1024   // GUARD_FP_RULES: fingerprint rules (bitmap width)
	GuardCIDRRules   = 131072 // GUARD_CIDR_RULES: source-CIDR-only rules
	GuardFPPlens     = 8      // GUARD_FP_PLENS
	GuardCIDRPlens   = 16     // GUARD_CIDR_PLENS
	GuardDefChunkLen = 248    // GUARD_DEF_CHUNK
	GuardIfaceSlots  = 4096   // GUARD_IFACE_SLOTS
	// GUARD_PREFILTER_SHIFT: the address prefilter has 2^this u64 words.
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
	GuardWildHasSrc = uint32(guardGuardWildWILD_HAS_SRC)
	GuardWildHasDst = uint32(guardGuardWildWILD_HAS_DST)
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

const (
	GuardOAShift  = 13 // GUARD_OA_SHIFT
	GuardOAProbes = 8  // GUARD_OA_PROBES
	GuardOAUsed   = 1  // OA_USED
	GuardOAValid  = 2  // OA_VALID
)
