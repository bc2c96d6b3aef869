"""Right and wrong answers to chapter 5's exercises (tests/test_exercises.py runs the checkers on
them): the wrong ones are the slips a reader makes (a merge that overlaps, drops the last id or
edits its input; pair counts not weighted by the chunk's count, ties broken by raw id or the
largest key; a token count off by one; the head counted twice or the positions and biases
forgotten; WordPiece taking the shortest piece, forgetting ``##`` or marking one piece unknown).
"""

from __future__ import annotations

from lmlab.byte_pairs import get_stats, tie_key


def _merge(ids, pair, idx):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_drops_last(ids, pair, idx):  # the loop stops one id early
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_right_to_left(ids, pair, idx):
    return _merge(ids[::-1], pair[::-1], idx)[::-1]


def _merge_in_place(ids, pair, idx):
    i = 0
    while i + 1 < len(ids):
        if (ids[i], ids[i + 1]) == pair:
            ids[i:i + 2] = [idx]
        i += 1
    return ids


def _best_pair(weighted=True, key=tie_key, largest=False):
    def best_pair(words, chunk_counts):
        counts = {}
        for chunk, ids in words.items():
            for pair, n in get_stats(ids).items():
                counts[pair] = counts.get(pair, 0) + n * (chunk_counts[chunk] if weighted else 1)
        if largest:
            return max(counts, key=lambda p: (counts[p], key(p)))
        return min(counts, key=lambda p: (-counts[p], key(p)))
    return best_pair


def _vocab_share(positions=True, biases=True, tied=True, final_norm=True):
    def vocab_share(vocab_size, d_model, num_layers):
        c = d_model
        per_layer = 12 * c * c + ((2 * c + 3 * c + c + 2 * c + 4 * c + c) if biases else 0)
        total = (vocab_size * c * (1 if tied else 2) + (1024 * c if positions else 0)
                 + num_layers * per_layer + (2 * c if final_norm else 0))
        return vocab_size * c / total
    return vocab_share


def _wordpiece(longest=True, prefix="##", whole_word_unknown=True):
    def wordpiece(word, vocab):
        pieces, start = [], 0
        while start < len(word):
            ends = range(len(word), start, -1) if longest else range(start + 1, len(word) + 1)
            for end in ends:
                piece = word[start:end] if start == 0 else prefix + word[start:end]
                if piece in vocab:
                    pieces.append(piece)
                    start = end
                    break
            else:
                if whole_word_unknown:
                    return ["[UNK]"]
                pieces.append("[UNK]")
                start += 1
        return pieces
    return wordpiece


ANSWERS = {
    "5.1": (lambda: _merge,
            [lambda: _merge_drops_last, lambda: _merge_right_to_left, lambda: _merge_in_place,
             lambda: (lambda ids, pair, idx: [idx if i == pair[0] else i for i in ids])]),
    "5.2": (lambda: _best_pair(),
            [lambda: _best_pair(weighted=False), lambda: _best_pair(key=lambda p: p),
             lambda: _best_pair(largest=True)]),
    "5.3": (lambda: 10, [lambda: 9, lambda: 6, lambda: "10"]),
    "5.4": (lambda: _vocab_share(),
            [lambda: _vocab_share(positions=False), lambda: _vocab_share(biases=False),
             lambda: _vocab_share(tied=False), lambda: _vocab_share(final_norm=False)]),
    "5.5": (lambda: _wordpiece(),
            [lambda: _wordpiece(longest=False), lambda: _wordpiece(prefix=""),
             lambda: _wordpiece(whole_word_unknown=False)]),
}
