package identity

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tyler-smith/go-bip39"
)

// BackupWordCount is the number of BIP39 words that spell a 32-byte seed.
const BackupWordCount = 24

// ErrBackupWords is wrapped by every backup-word parsing error.
var ErrBackupWords = errors.New("invalid backup words")

// BackupWords spells the key's seed as 24 BIP39 English words. The words
// are the key: anyone who reads them owns the identity.
func (k *PrivateKey) BackupWords() string {
	m, err := bip39.NewMnemonic(k.seed[:])
	if err != nil {
		panic("identity: 32-byte entropy is always valid for BIP39: " + err.Error())
	}
	return m
}

// FromBackupWords restores the exact key that BackupWords spelled. It
// accepts any case and any whitespace between the words.
func FromBackupWords(words string) (*PrivateKey, error) {
	fields := strings.Fields(strings.ToLower(words))
	if len(fields) != BackupWordCount {
		return nil, fmt.Errorf("%w: expected %d words, got %d", ErrBackupWords, BackupWordCount, len(fields))
	}
	for i, w := range fields {
		if _, ok := bip39.GetWordIndex(w); !ok {
			return nil, fmt.Errorf("%w: word %d (%q) is not in the BIP39 English word list", ErrBackupWords, i+1, w)
		}
	}
	seed, err := bip39.EntropyFromMnemonic(strings.Join(fields, " "))
	if err != nil {
		return nil, fmt.Errorf("%w: checksum does not match; a word is wrong or out of order", ErrBackupWords)
	}
	return NewPrivateKey(seed)
}
