"""Attacks on token-id text classifiers: greedy word substitution and an embedding-space probe.

:func:`token_substitution_attack` is HotFlip-style (Ebrahimi et al. 2018, "HotFlip: White-Box
Adversarial Examples for Text Classification", ACL): the loss change of replacing the token at
position ``i`` by word ``w`` is estimated to first order as ``(e_w - e_i) . dL/de_i`` from the
model's own embedding matrix. Written by hand: TextAttack and OpenAttack need network downloads
(word vectors, language models) and wrap string-level models, while this works on token ids with
the model's embedding. Substitutes are restricted to each word's ``n_candidates`` nearest
embedding neighbours (cosine), never the special tokens, and pads are never substituted. Greedy:
each step ranks every (position, substitute) pair by the first-order estimate, evaluates the top
``n_exact`` exactly and applies the one with the highest true cross-entropy; at most one change
per position; a sample stops as soon as its prediction flips.

Honesty: on a small vocabulary, embedding neighbours are not synonyms — in a sentiment model
"good" and "bad" may be neighbours — so an unconstrained substitution can change the true label.
The unconstrained robust accuracy is therefore an upper bound on vulnerability, not a real
attack. Pass ``allowed(orig_word, new_word)`` (e.g. :func:`role_preserving`) to also
run the label-preserving attack, and ``label_oracle`` to count how many unconstrained flips
changed the true label.

:func:`embedding_space_attack` perturbs the embedding vectors themselves (PGD, L2 ball per
token): a diagnostic of the classifier's smoothness, not a realisable text attack.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditkit.attacks.common import check_positive_int, eval_mode, make_generator
from auditkit.card import AuditCard, TextSpec
from auditkit.stats import proportion

Allowed = Callable[[str, str], bool]
Oracle = Callable[[list[str]], int]
NOT_FLIPPED = -1


def _check_model(model: nn.Module) -> nn.Embedding:
    emb = getattr(model, "embedding", None)
    if not isinstance(emb, nn.Embedding) or not callable(getattr(model, "forward_embedded", None)):
        raise ValueError("the model needs an 'embedding' (nn.Embedding) and "
                         "'forward_embedded(emb, tokens)', like auditkit's ReviewsLSTM")
    return emb


def _text(card: AuditCard) -> TextSpec:
    if card.text is None:
        raise ValueError("the card has no 'text' (vocabulary): a text attack needs it")
    return card.text


def _check_inputs(model: nn.Module, tokens: Tensor, y: Tensor, card: AuditCard) -> nn.Embedding:
    _text(card)
    emb = _check_model(model)
    if not isinstance(tokens, Tensor) or tokens.dtype != torch.int64 or tokens.dim() != 2:
        raise ValueError("tokens must be an int64 tensor [N, L] of token ids")
    if not isinstance(y, Tensor) or y.shape != (tokens.shape[0],) or y.dtype.is_floating_point:
        raise ValueError(f"y must be an integer tensor of labels with shape [{tokens.shape[0]}]")
    v = len(card.text.vocab)
    if emb.num_embeddings != v:
        raise ValueError(f"the model embeds {emb.num_embeddings} tokens but the card's vocabulary "
                         f"has {v}: use the card that belongs to the model")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= v):
        raise ValueError(f"tokens hold ids outside [0, {v}): encode with the card's vocabulary")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= card.num_classes):
        raise ValueError(f"y holds labels outside [0, {card.num_classes})")
    return emb


def role_preserving(roles: dict[str, str]) -> Allowed:
    """``allowed(orig, new)`` from a data set's substitution rule (``AuditData.substitution_roles``).

    A word may only become a word of the same role; words without an entry share the role
    ``"other"``; words of the role ``"protected"`` are never replaced. The built-in reviews
    corpus gives a rule under which every substitution provably keeps its label
    (:func:`auditkit.data.reviews.label_preserving_roles`).
    """
    role = dict(roles)

    def allowed(orig: str, new: str) -> bool:
        a = role.get(orig, "other")
        return a != "protected" and a == role.get(new, "other")

    return allowed


def neighbour_candidates(
    weight: Tensor, card: AuditCard, n_candidates: int = 8, allowed: Allowed | None = None
) -> Tensor:
    """Plausible substitutes of every vocabulary word.

    Args:
        weight: ``[V, E]`` embedding matrix.
        card: text card (vocabulary, pad and unk tokens).
        n_candidates: nearest neighbours (cosine) kept per word, specials and the word excluded.
        allowed: optional filter ``allowed(orig_word, new_word)`` applied to those neighbours
            (it removes candidates; it never brings in farther words).

    Returns:
        int64 ``[V, n_candidates]`` token ids, ``-1`` where there is none; the rows of the pad
        and unk tokens are all ``-1`` (they are never substituted).
    """
    check_positive_int("n_candidates", n_candidates)
    text = _text(card)
    vocab = text.vocab
    special = [text.pad_id, text.unk_id]
    w = F.normalize(weight.detach().double(), dim=1)
    sim = w @ w.T
    sim.fill_diagonal_(float("-inf"))
    sim[:, special] = float("-inf")
    k = min(n_candidates, max(0, len(vocab) - 3))
    cand = sim.topk(k, dim=1).indices if k else torch.zeros(len(vocab), 0, dtype=torch.long)
    cand = torch.cat([cand, cand.new_full((len(vocab), n_candidates - k), -1)], 1)
    cand[special] = -1
    if allowed is not None:
        for i in range(len(vocab)):  # V * K calls of a Python predicate, once per attack
            for j in range(n_candidates):
                c = int(cand[i, j])
                if c >= 0 and not allowed(vocab[i], vocab[c]):
                    cand[i, j] = -1
    return cand.to(weight.device)


def greedy_substitution(
    model: nn.Module,
    tokens: Tensor,
    y: Tensor,
    candidates: Tensor,
    max_substitutions: int,
    n_exact: int = 4,
    batch_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Greedy HotFlip-style substitution on a batch of token sequences (module docstring).

    Args:
        model: text classifier with ``embedding`` and ``forward_embedded(emb, tokens)``.
        tokens: ``[N, L]`` int64 token ids; y: ``[N]`` int64 labels.
        candidates: ``[V, K]`` substitute ids per word, ``-1`` = none (see
            :func:`neighbour_candidates`).
        max_substitutions: most positions changed per sample.
        n_exact: first-order candidates evaluated exactly per step.
        batch_size: samples per batch.

    Returns:
        ``tokens_adv [N, L]`` (the flipping sequence, or the last one tried) and ``flipped_at``
        int64 ``[N]``: 0 if misclassified unperturbed, ``k`` if the prediction flipped after
        ``k`` substitutions, ``-1`` (``NOT_FLIPPED``) if it never did.
    """
    check_positive_int("max_substitutions", max_substitutions, minimum=0)
    check_positive_int("n_exact", n_exact)
    check_positive_int("batch_size", batch_size)
    adv, flipped = tokens.clone(), torch.full_like(y, NOT_FLIPPED)
    with eval_mode(model):
        for s in range(0, tokens.shape[0], batch_size):
            a, f = _greedy_batch(model, tokens[s:s + batch_size], y[s:s + batch_size], candidates,
                                 max_substitutions, n_exact)
            adv[s:s + batch_size], flipped[s:s + batch_size] = a, f
    return adv, flipped


def _greedy_batch(model: nn.Module, tokens: Tensor, y: Tensor, candidates: Tensor, max_k: int,
                  n_exact: int) -> tuple[Tensor, Tensor]:
    emb_layer: nn.Embedding = model.embedding  # type: ignore[assignment]
    weight = emb_layer.weight.detach()
    cur = tokens.clone()
    with torch.no_grad():
        flipped = torch.where(model(cur).argmax(1) != y, 0, NOT_FLIPPED)
    used = torch.zeros_like(cur, dtype=torch.bool)  # positions already substituted
    active = (flipped == NOT_FLIPPED).nonzero().squeeze(1)
    for k in range(1, max_k + 1):
        if active.numel() == 0:
            break
        tok, lab = cur[active], y[active]
        e = emb_layer(tok).detach().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model.forward_embedded(e, tok), lab, reduction="sum")
            (g,) = torch.autograd.grad(loss, e)
        cand = candidates[tok]  # [B, L, K]
        ok = (cand >= 0) & ~used[active].unsqueeze(-1)
        ew = weight[cand.clamp_min(0)]  # [B, L, K, E]
        first_order = ((ew - e.detach().unsqueeze(2)) * g.unsqueeze(2)).sum(-1)
        first_order = first_order.masked_fill(~ok, float("-inf")).flatten(1)  # [B, L*K]
        top = first_order.topk(min(n_exact, first_order.shape[1]), dim=1)
        b, m = top.indices.shape
        pos = top.indices // cand.shape[2]
        sub = cand.flatten(1).gather(1, top.indices)
        trial = tok.unsqueeze(1).repeat(1, m, 1)  # [B, m, L]
        trial.scatter_(2, pos.unsqueeze(-1), sub.clamp_min(0).unsqueeze(-1))
        with torch.no_grad():
            logits = model(trial.flatten(0, 1)).view(b, m, -1)
        exact = F.cross_entropy(logits.flatten(0, 1), lab.repeat_interleave(m), reduction="none")
        exact = exact.view(b, m).masked_fill(torch.isinf(top.values), float("-inf"))
        best = exact.argmax(1)
        can = torch.isfinite(exact.gather(1, best.unsqueeze(1)).squeeze(1))
        rows = torch.arange(b, device=tok.device)
        new_tok = torch.where(can.unsqueeze(1), trial[rows, best], tok)
        cur[active] = new_tok
        u = used[active]
        u[rows[can], pos[rows, best][can]] = True
        used[active] = u
        now = can & (logits[rows, best].argmax(1) != lab)
        flipped[active[now]] = k
        active = active[can & ~now]  # samples with no substitute left stay robust
    return cur, flipped


def _decode(ids: Sequence[int], vocab: list[str], pad: int) -> list[str]:
    return [vocab[i] for i in ids if i != pad]


def _run_summary(tokens: Tensor, y: Tensor, adv: Tensor, flipped: Tensor, ks: list[int],
                 card: AuditCard, pred_after: Tensor, n_examples: int, seed: int,
                 oracle: Oracle | None) -> dict[str, Any]:
    text = _text(card)
    vocab, pad, n = text.vocab, text.pad_id, tokens.shape[0]
    curve = [{"k": k, "robust_accuracy": proportion(
        int(((flipped == NOT_FLIPPED) | (flipped > k)).sum()), n)} for k in ks]
    succ = ((flipped > 0) & (flipped <= max(ks))).nonzero().squeeze(1).tolist()
    out: dict[str, Any] = {"curve": curve, "n_flipped": len(succ)}
    if oracle is not None:
        changed = 0
        for i in succ:  # one rule evaluation per flipped sentence
            try:
                changed += int(oracle(_decode(adv[i].tolist(), vocab, pad)) != int(y[i]))
            except ValueError:  # the rule no longer defines a label: count as changed
                changed += 1
        out["true_label_changed"] = proportion(changed, len(succ))
    examples = []
    for i in sorted(random.Random(seed).sample(succ, min(n_examples, len(succ)))):
        orig, new = tokens[i].tolist(), adv[i].tolist()
        subs = [{"position": p, "from": vocab[a], "to": vocab[b]}
                for p, (a, b) in enumerate(zip(orig, new)) if a != b]
        marked = [f"[{vocab[a]}->{vocab[b]}]" if a != b else vocab[a]
                  for a, b in zip(orig, new) if a != pad]
        examples.append({
            "index": i,
            "original": " ".join(_decode(orig, vocab, pad)),
            "adversarial": " ".join(_decode(new, vocab, pad)),
            "marked": " ".join(marked),
            "substitutions": subs,
            "label": card.class_names[int(y[i])],
            "prediction_before": card.class_names[int(y[i])],  # flipped samples start correct
            "prediction_after": card.class_names[int(pred_after[i])],
        })
    out["examples"] = examples
    return out


def token_substitution_attack(
    model: nn.Module,
    tokens: Tensor,
    y: Tensor,
    card: AuditCard,
    *,
    max_substitutions: list[int] | None = None,
    n_candidates: int = 8,
    allowed: Allowed | None = None,
    label_oracle: Oracle | None = None,
    n_exact: int = 4,
    n_examples: int = 5,
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Robust accuracy against ``k`` greedy word substitutions, unconstrained and, with
    ``allowed``, label-preserving (module docstring).

    Args:
        model: text classifier ``[N, L]`` int64 -> logits ``[N, C]`` with ``embedding`` and
            ``forward_embedded`` (eval mode during the attack).
        tokens: ``[N, L]`` int64 ids in the card's vocabulary, right-padded with its pad id.
        y: ``[N]`` int64 labels.
        card: text card (vocabulary, pad/unk tokens, class names).
        max_substitutions: the budgets ``k`` reported (default ``[1, 2, 3]``); ``k = 0`` (clean
            accuracy) is always added.
        n_candidates: nearest embedding neighbours per word (cosine) allowed as substitutes.
        allowed: optional ``allowed(orig_word, new_word) -> bool``; when given, the attack runs
            again with only the allowed candidates (see :func:`role_preserving`).
        label_oracle: optional ``oracle(words) -> label`` (e.g. the reviews ``sentiment_rule``'s
            label) to count the flips whose true label changed; a ValueError counts as changed.
        n_exact: first-order candidates evaluated exactly per greedy step.
        n_examples: flipped examples reported per run, drawn with ``seed``.
        seed: seed of the example draw (the attack itself is deterministic).
        batch_size: sentences per batch.

    Returns:
        JSON-able dict: ``clean_accuracy`` (proportion: value, ci_low, ci_high, n);
        ``unconstrained`` and, with ``allowed``, ``label_preserving``: each ``{"curve":
        [{"k", "robust_accuracy": proportion}], "n_flipped", "examples": [{index, original,
        adversarial, marked ("[from->to]" at substituted words), substitutions, label,
        prediction_before, prediction_after}]}`` plus ``true_label_changed`` (proportion of
        flips, with ``label_oracle``); ``candidates`` / ``candidates_label_preserving``: word ->
        list of substitutes; ``note``; ``params``. The unconstrained curve takes the per-sample
        worst case of both runs (allowed substitutes are a subset of the unconstrained ones),
        so it is never above the label-preserving curve.
    """
    emb = _check_inputs(model, tokens, y, card)
    ks = sorted({0, *([1, 2, 3] if max_substitutions is None else max_substitutions)})
    for k in ks:
        check_positive_int("max_substitutions entries", k, minimum=0)
    check_positive_int("seed", seed, minimum=0)
    vocab = _text(card).vocab
    tokens, y = tokens.detach(), y.detach()
    runs: dict[str, tuple[Tensor, Tensor]] = {}
    cands: dict[str, Tensor] = {"unconstrained": neighbour_candidates(emb.weight, card, n_candidates)}
    if allowed is not None:
        cands["label_preserving"] = neighbour_candidates(emb.weight, card, n_candidates, allowed)
    for name, cand in cands.items():
        runs[name] = greedy_substitution(model, tokens, y, cand, max(ks), n_exact, batch_size)
    if "label_preserving" in runs:
        # A label-preserving substitution is also an unconstrained one: take the worst case.
        ua, uf = runs["unconstrained"]
        la, lf = runs["label_preserving"]
        better = (lf != NOT_FLIPPED) & ((uf == NOT_FLIPPED) | (lf < uf))
        runs["unconstrained"] = (torch.where(better.unsqueeze(1), la, ua), torch.where(better, lf, uf))
    with torch.no_grad(), eval_mode(model):
        clean_pred = torch.cat([model(tokens[i:i + batch_size])
                                for i in range(0, tokens.shape[0], batch_size)]).argmax(1)
    out: dict[str, Any] = {"clean_accuracy": proportion(int((clean_pred == y).sum()), len(y))}
    for name, (adv, flipped) in runs.items():
        with torch.no_grad(), eval_mode(model):
            pred = torch.cat([model(adv[i:i + batch_size])
                              for i in range(0, adv.shape[0], batch_size)]).argmax(1)
        out[name] = _run_summary(tokens, y, adv, flipped, ks, card, pred, n_examples, seed,
                                 label_oracle)
        suffix = "" if name == "unconstrained" else "_" + name
        out["candidates" + suffix] = {
            vocab[i]: [vocab[j] for j in cands[name][i].tolist() if j >= 0]
            for i in range(len(vocab)) if bool((cands[name][i] >= 0).any())}
    out["note"] = ("substitutes are the nearest embedding neighbours of each word, which on a toy "
                   "vocabulary are not synonyms: unconstrained substitutions may change the true "
                   "label, so the unconstrained number is an upper bound on vulnerability; the "
                   "label-preserving run (when given a filter) is the realistic attack")
    out["params"] = {"max_substitutions": ks, "n_candidates": n_candidates, "n_exact": n_exact,
                     "seed": seed, "label_preserving_filter": allowed is not None}
    return out


def embedding_space_attack(
    model: nn.Module,
    tokens: Tensor,
    y: Tensor,
    card: AuditCard,
    eps_list: list[float],
    steps: int = 20,
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, Any]:
    """PGD on the embedding vectors: every non-pad token's embedding moves within an L2 ball.

    A *diagnostic* of how smooth the classifier is around its inputs, not a realisable text
    attack (the perturbed vectors are no words). Cross-entropy ascent, random start in the ball,
    step ``2.5 * eps / steps`` along each token's unit gradient, pads never perturbed. A sample
    fooled at a smaller eps counts as fooled at every larger one (the point is inside that ball).

    Args:
        model: text classifier with ``embedding`` and ``forward_embedded(emb, tokens)``.
        tokens: ``[N, L]`` int64 ids; y: ``[N]`` int64 labels; card: text card.
        eps_list: per-token L2 radii in embedding units (0 = clean accuracy).
        steps: PGD steps per eps.
        seed: seed of the random starts.
        batch_size: sentences per batch.

    Returns:
        JSON-able dict: ``curve`` ``[{"eps", "eps_relative" (eps / median token-embedding norm),
        "robust_accuracy": proportion}]`` ascending; ``median_embedding_norm``;
        ``median_neighbour_distance`` (L2 to the nearest other word, for scale); ``note``;
        ``params``.
    """
    emb = _check_inputs(model, tokens, y, card)
    check_positive_int("steps", steps, minimum=0)
    check_positive_int("seed", seed, minimum=0)
    check_positive_int("batch_size", batch_size)
    if not eps_list:
        raise ValueError("eps_list is empty: give at least one radius, e.g. [0, 0.5, 1]")
    for e in eps_list:
        if not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
            raise ValueError(f"eps values must be finite numbers >= 0, got {e!r}")
    text = _text(card)
    specials = [text.pad_id, text.unk_id]
    words = [i for i in range(emb.num_embeddings) if i not in specials]
    w = emb.weight.detach()[words]
    med_norm = float(w.norm(dim=1).median())
    dist = torch.cdist(w, w).fill_diagonal_(float("inf"))
    med_nn = float(dist.min(1).values.median())
    gen = make_generator(seed, tokens.device)
    eps_sorted = sorted(float(e) for e in eps_list)
    fooled = torch.zeros(len(y), dtype=torch.bool, device=tokens.device)
    curve = []
    with eval_mode(model):
        for eps in eps_sorted:
            for s in range(0, tokens.shape[0], batch_size):
                sl = slice(s, s + batch_size)
                fooled[sl] |= _embedding_pgd(model, tokens[sl], y[sl], eps, steps, gen,
                                             text.pad_id)
            curve.append({"eps": eps, "eps_relative": eps / med_norm if med_norm else None,
                          "robust_accuracy": proportion(int((~fooled).sum()), len(y))})
    return {
        "curve": curve,
        "median_embedding_norm": med_norm,
        "median_neighbour_distance": med_nn,
        "note": "embedding-space, not a realisable text attack: a smoothness diagnostic only",
        "params": {"eps_list": eps_sorted, "steps": steps, "seed": seed, "norm": "l2 per token"},
    }


def _embedding_pgd(model: nn.Module, tokens: Tensor, y: Tensor, eps: float, steps: int,
                   gen: torch.Generator, pad_id: int) -> Tensor:
    """Whether each sample of the batch is misclassified at some PGD iterate ``[B]``."""
    with torch.no_grad():
        e0 = model.embedding(tokens)
        fooled = model.forward_embedded(e0, tokens).argmax(1) != y
    if eps == 0 or steps == 0:
        return fooled
    mask = (tokens != pad_id).unsqueeze(-1).to(e0.dtype)  # [B, L, 1]

    def project(d: Tensor) -> Tensor:
        n = d.norm(dim=-1, keepdim=True)
        return d * torch.clamp(eps / n.clamp_min(1e-12), max=1.0) * mask

    g0 = torch.randn(e0.shape, generator=gen, device=e0.device, dtype=e0.dtype)
    r0 = torch.rand(e0.shape[:2] + (1,), generator=gen, device=e0.device, dtype=e0.dtype)
    delta = project(g0 / g0.norm(dim=-1, keepdim=True).clamp_min(1e-12) * eps * r0)
    alpha = 2.5 * eps / steps
    for _ in range(steps):
        d = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model.forward_embedded(e0 + d, tokens)
            (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), d)
        fooled |= logits.detach().argmax(1) != y
        delta = project(delta + alpha * g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    with torch.no_grad():
        fooled |= model.forward_embedded(e0 + delta, tokens).argmax(1) != y
    return fooled
