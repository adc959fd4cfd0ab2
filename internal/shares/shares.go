// Package shares splits the DHCP clients of one segment between the
// bootstrapd instances that serve it, as Kea's load-balancing mode does
// (RFC 3074): each client's MAC hashes to one of 256 buckets, each bucket
// belongs to one live instance, and an instance answers only the clients
// whose bucket it holds. No instance asks another anything; they agree
// because they hash alike and see the same list of live instances (kept
// in etcd, see store.Etcd.Members).
//
// Buckets are given out by rendezvous hashing: each bucket goes to the
// instance whose name hashed with the bucket scores highest. When an
// instance leaves, only its buckets move, spread over the others; the
// clients of the instances that stay keep their server.
package shares

import (
	"hash/fnv"
	"sync/atomic"
)

// mix is RFC 3074's mixing table (section 6): the 256 byte values in a
// fixed pseudo-random order.
var mix = [256]byte{
	251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232,
	31, 32, 55, 60, 152, 58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223,
	59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65,
	180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16,
	40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67,
	207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5,
	20, 113, 71, 35, 128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245,
	230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241, 73, 88, 105,
	39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84,
	82, 163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239,
	195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253,
	137, 185, 99, 164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238,
	56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171, 72, 50,
	33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213,
	96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4,
	216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151,
}

// Bucket is RFC 3074's hash of a client's hardware address: a Pearson
// hash, seeded with the length, over the bytes from last to first.
func Bucket(hw []byte) byte {
	h := byte(len(hw))
	for i := len(hw) - 1; i >= 0; i-- {
		h = mix[h^hw[i]]
	}
	return h
}

// Shares is this instance's part of a segment. The zero value holds every
// bucket: an instance alone (or not yet told of the others) answers all.
type Shares struct {
	self string
	mine atomic.Pointer[[256]bool] // nil: all
}

// New is the shares of the instance named self.
func New(self string) *Shares { return &Shares{self: self} }

// Set gives out the buckets among the live instances named; self's list
// of buckets is what Mine answers from then on. A list without self (this
// instance's own entry lapsed) leaves it answering nobody: the others have
// taken its clients.
func (s *Shares) Set(live []string) {
	var mine [256]bool
	for b := range mine {
		mine[b] = Owner(byte(b), live) == s.self
	}
	s.mine.Store(&mine)
}

// Mine reports whether this instance answers the client with hardware
// address hw.
func (s *Shares) Mine(hw []byte) bool {
	m := s.mine.Load()
	return m == nil || m[Bucket(hw)]
}

// Count is how many of the 256 buckets are this instance's.
func (s *Shares) Count() int {
	m := s.mine.Load()
	if m == nil {
		return 256
	}
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

// Owner is the instance among live that holds bucket b ("" when none).
func Owner(b byte, live []string) string {
	var best string
	var top uint64
	for _, name := range live {
		h := fnv.New64a()
		h.Write([]byte{b})
		h.Write([]byte(name))
		if v := h.Sum64(); best == "" || v > top || (v == top && name < best) {
			best, top = name, v
		}
	}
	return best
}
