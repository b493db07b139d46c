"""Exercises in the notebooks: the learner's answer, a hidden solution that CI runs, an assert that checks it.

Each exercise is a markdown cell with the task and three code cells::

    answer_1 = None                         # the learner's cell: write the answer here
    if ex.solutions:                        # the solution cell (source hidden in JupyterLab; CI runs it)
        answer_1 = ...
    ex.check(1, answer_1, lambda a: ..., "what a right answer satisfies")

``ex = Exercises(solutions=True)`` sits in the notebook's constants cell. The committed notebooks run with
``solutions=True``, so ``pytest --nbval`` executes every solution and its check; a learner sets it to ``False``,
writes answers and runs the checks. An unanswered exercise only prints a reminder (so "Run all" still reaches the
end); a wrong answer raises ``AssertionError`` with the hint. With solutions on, an answer of ``None`` is an error:
a solution that stopped producing its answer must not pass silently.
"""
from __future__ import annotations

from typing import Any, Callable


class Exercises:
    """The solutions switch and the checks of one notebook's exercises."""

    def __init__(self, solutions: bool = True):
        if not isinstance(solutions, bool):
            raise TypeError(f"solutions must be True or False, got {solutions!r}")
        self.solutions = solutions
        self.passed: set[int] = set()

    def check(self, number: int, answer: Any, test: Callable[[Any], bool], hint: str = "") -> None:
        """Assert that ``test(answer)`` holds; print ``Exercise N: correct`` and add N to :attr:`passed`.

        ``answer is None`` means not answered: with solutions off it prints a reminder; with solutions on it
        raises (the solution cell did not set the answer). Returns nothing, so a check that ends a notebook cell
        adds no ``None``/``True`` output line.
        """
        if answer is None:
            if self.solutions:
                raise AssertionError(f"Exercise {number}: the solution cell left the answer at None")
            print(f"Exercise {number}: not answered yet (write your answer in the cell above, then run this cell)")
            return
        try:
            ok = bool(test(answer))
        except Exception as e:       # a wrongly shaped answer is a wrong answer, said plainly
            raise AssertionError(f"Exercise {number}: the check could not read your answer "
                                 f"({type(e).__name__}: {e}). {hint}") from e
        if not ok:
            raise AssertionError(f"Exercise {number}: not yet. {hint}")
        self.passed.add(number)
        print(f"Exercise {number}: correct")
