"""Bidirectional stepwise selection by AIC, the one search the Cox nomograms (paper 000) and Model_CS's
derivation (paper 004, logistic) share: R's ``step(direction = "both")`` / ``MASS::stepAIC`` with the starting
model's terms as the scope."""

from __future__ import annotations


def stepwise_aic(scope, start, aic):
    """From the model of ``start``'s terms (kept in ``scope``'s order), every step tries dropping each included
    term and adding back each excluded term of ``scope``, takes the move that lowers ``aic(terms)`` most (the
    first of equals, drops before adds), and stops when no move lowers it by more than 1e-9.

    Returns ``(terms, aic, trace)``; ``trace``: one ``(move, terms, aic)`` per step, the start first."""
    current = [term for term in scope if term in start]
    best = aic(current)
    trace = [("start", list(current), best)]
    while True:
        moves = [("drop", term, [t for t in current if t != term]) for term in current]
        moves += [("add", term, [t for t in scope if t in current or t == term]) for term in scope
                  if term not in current]
        if not moves:
            break
        value, move, term, chosen = min(((aic(chosen), move, term, chosen) for move, term, chosen in moves),
                                        key=lambda scored: scored[0])
        if value >= best - 1e-9:
            break
        best, current = value, chosen
        trace.append((f"{move} {term}", list(current), value))
    return current, best, trace
