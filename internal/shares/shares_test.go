package shares

import (
	"math/rand/v2"
	"testing"
)

func TestMixIsAPermutation(t *testing.T) {
	var seen [256]bool
	for _, v := range mix {
		if seen[v] {
			t.Fatalf("%d appears twice in the mixing table", v)
		}
		seen[v] = true
	}
}

// Buckets of random MACs are spread evenly enough that two instances each
// get close to half of the clients.
func TestBucketSpread(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var n [256]int
	const macs = 256 * 200
	for range macs {
		hw := []byte{0x52, 0x54, 0, byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}
		n[Bucket(hw)]++
	}
	for b, c := range n {
		if c < 100 || c > 300 {
			t.Errorf("bucket %d got %d of %d MACs, want about 200", b, c, macs)
		}
	}
}

// Two live instances split the buckets without overlap or gap; one alone
// holds them all; a third takes some from each and moves nothing else;
// one that is not listed holds none.
func TestShares(t *testing.T) {
	a, b, c := New("a"), New("b"), New("c")
	owners := func(live []string, ss ...*Shares) map[string]int {
		count := map[string]int{}
		for _, s := range ss {
			s.Set(live)
		}
		for bk := range 256 {
			hw := macIn(t, byte(bk))
			held := 0
			for _, s := range ss {
				if s.Mine(hw) {
					held++
					count[s.self]++
				}
			}
			if held != 1 && len(live) > 0 {
				t.Fatalf("live %v: bucket %d is held by %d instances", live, bk, held)
			}
		}
		return count
	}
	two := owners([]string{"a", "b"}, a, b)
	if two["a"] < 90 || two["b"] < 90 {
		t.Errorf("a and b hold %v of 256 buckets; want about half each", two)
	}
	if got := owners([]string{"a"}, a); got["a"] != 256 {
		t.Errorf("a alone holds %d buckets", got["a"])
	}
	before := map[int]string{}
	owners([]string{"a", "b"}, a, b)
	for bk := range 256 {
		before[bk] = Owner(byte(bk), []string{"a", "b"})
	}
	owners([]string{"a", "b", "c"}, a, b, c)
	for bk := range 256 {
		if now := Owner(byte(bk), []string{"a", "b", "c"}); now != "c" && now != before[bk] {
			t.Errorf("bucket %d moved from %s to %s when c joined", bk, before[bk], now)
		}
	}
	c.Set([]string{"a", "b"})
	if c.Count() != 0 {
		t.Errorf("an instance that is not listed holds %d buckets", c.Count())
	}
	if New("x").Count() != 256 || !New("x").Mine([]byte{1, 2, 3, 4, 5, 6}) {
		t.Error("an instance not yet told of others does not answer everyone")
	}
}

// macIn finds a MAC whose bucket is b.
func macIn(t *testing.T, b byte) []byte {
	for i := range 1 << 16 {
		hw := []byte{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)}
		if Bucket(hw) == b {
			return hw
		}
	}
	t.Fatalf("no MAC found in bucket %d", b)
	return nil
}

// FuzzBucket: any hardware address hashes without a panic, the same way
// twice.
func FuzzBucket(f *testing.F) {
	f.Add([]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, hw []byte) {
		if Bucket(hw) != Bucket(append([]byte(nil), hw...)) {
			t.Fatal("not deterministic")
		}
	})
}
