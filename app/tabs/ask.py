"""Ask tab: a chat about the analysed clip (AVQA); each answer with its confidence and alternatives.

Words the model never saw in training are flagged in the answer, and the clip's media warnings
(e.g. no audio track) are repeated, so an answer is never read without its caveats. Suggested
questions are about what the analysed clip contains: an example clip's own questions (from
``examples.json``), else questions naming the events found in it; one click asks one.
``api_ask`` is the ``/ask`` API endpoint (errors raise ``gr.Error``).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import gradio as gr

from app.errors import api_errors, guarded
from app.render import percent
from app.state import AppContext, Session, clip_path

NOT_OBJECTS = {"yes", "no", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
               "left", "middle", "right", "indoor", "outdoor", "simultaneously"}
GENERIC_QUESTIONS = [
    "How many objects are sounding in the video?",
    "Where is the first sounding object?",
    "Is the object on the left louder than the object on the right?",
    "How many types of sounds were heard throughout the video?",
]


def _spoken(answer: str) -> str:
    """An answer-vocabulary token as people write it: "church_bell" -> "church bell"."""
    return answer.replace("_", " ")


def answer_markdown(result: dict[str, Any], clip_name: str) -> str:
    """One answer as chat markdown: answer, confidence, alternatives, then every warning."""
    lines = [f"**{_spoken(result['answer'])}** (confidence {percent(result['probability'])})"]
    if result["alternatives"]:
        lines.append("Alternatives: " + ", ".join(f"{_spoken(a)} ({percent(p)})" for a, p in result["alternatives"]))
    if result["unknown_words"]:
        words = ", ".join(f"`{w}`" for w in result["unknown_words"])
        lines.append(f"⚠ Words the model never saw in training: {words}; the answer may be a guess.")
    for warning in result["warnings"]:
        if not warning.startswith("words the model never saw"):
            lines.append(f"⚠ {warning}")
    lines.append(f"<sub>about {clip_name}</sub>")
    return "\n\n".join(lines)


def question_word(name: str) -> str:
    """An AVE class name as questions spell it: "Violin, fiddle" -> "violin", "Acoustic guitar" -> "acoustic_guitar"."""
    return re.sub(r"[^a-z0-9]+", "_", name.split(",")[0].lower()).strip("_")


class AskTab:
    """Questions and answers about the current clip."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def object_names(self, session: Session | None = None) -> list[str]:
        """Answers that are also question words and not yes/no, numbers or sides: the objects the model knows."""
        meta = self.ctx.holder.meta("avqa", session)
        words = set(meta.get("question_vocab", []))
        return [a for a in meta.get("answer_vocab", []) if a in words and a not in NOT_OBJECTS]

    def example_questions(self, session: Session | None = None) -> list[str]:
        """Suggested questions about the analysed clip (generic ones before any analysis).

        An example clip offers its own questions (``examples.json``); another clip gets questions
        naming the events the AVE model found in it, if the AVQA model knows their words.
        """
        if session is None or not session.key:
            return list(GENERIC_QUESTIONS)
        for example in getattr(self.ctx, "example_items", []):
            if example.key == session.key and example.questions:
                return list(example.questions)
        known = set(self.object_names(session))
        names = [w.replace("_", " ") for w in (question_word(n) for n in session.objects) if w in known][:2]
        specific = [f"Is the {names[0]} in the video making a sound?"] if names else []
        if len(names) > 1:
            specific.append(f"Is the {names[0]} louder than the {names[1]}?")
        return specific + GENERIC_QUESTIONS

    def build(self) -> None:
        self.chat = gr.Chatbot(label="Questions about the analysed clip", height=420,
                               placeholder="Questions about the analysed clip: what sounds, how many, where, "
                                           "when (analyse a clip first).")
        with gr.Row():
            self.question = gr.Textbox(placeholder="Is the violin playing?", show_label=False, scale=5,
                                       submit_btn=False)
            self.send = gr.Button("Ask", variant="primary", scale=1)
            self.clear = gr.Button("Clear chat", scale=1)
        self.chips = gr.Dataset(components=[gr.Textbox(visible=False)], samples=[[q] for q in GENERIC_QUESTIONS],
                                type="index", label="Suggested questions about the analysed clip (click to ask)",
                                samples_per_page=8)
        self.status = gr.HTML()

    def suggest(self, session: Session) -> Any:
        """After an analysis: chips with the questions about that clip."""
        return gr.Dataset(samples=[[q] for q in self.example_questions(session)])

    def ask_chip(self, index: int | None, history: list[dict[str, Any]] | None, session: Session,
                 video: str | None) -> tuple[Any, ...]:
        """A click on a suggested question: ask it."""
        questions = self.example_questions(session)
        question = questions[index] if index is not None and 0 <= int(index) < len(questions) else ""
        return self.ask(question, history, session, video)

    @guarded(4)
    def ask(self, question: str, history: list[dict[str, Any]] | None, session: Session,
            video: str | None) -> tuple[Any, ...]:
        """Answer ``question`` about the current clip; on failure the chat and the typed question are kept."""
        result = self.answer(question, session, video)
        name = Path(video or session.video or "clip").name
        history = list(history or []) + [{"role": "user", "content": question.strip()},
                                         {"role": "assistant", "content": answer_markdown(result, name)}]
        return history, "", dataclasses.replace(session, last_question=question.strip()), ""

    def answer(self, question: str, session: Session, video: str | None) -> dict[str, Any]:
        """``Predictor.ask`` about the clip of ``clip_path`` with the session's model."""
        predictor = self.ctx.holder.require(session)
        if "avqa" not in predictor.tasks:
            raise ValueError("The loaded model has no AVQA checkpoint, so it cannot answer questions.")
        if not (question or "").strip():
            raise ValueError("Type a question first, e.g. 'How many objects are sounding in the video?'")
        key = predictor.load(clip_path(session, video)).key
        return predictor.ask(question, key=key)

    @api_errors
    def api_ask(self, question: str, video: str | None) -> tuple[str, float, list[dict[str, Any]]]:
        """``/ask``: (question, clip) -> (answer, confidence, alternatives); errors raise gr.Error."""
        if not video:
            raise ValueError("Send the clip the question is about.")
        result = self.answer(question, Session(), video)
        alternatives = [{"answer": a, "probability": p} for a, p in result["alternatives"]]
        return result["answer"], result["probability"], alternatives

    def clear_chat(self) -> tuple[list[dict[str, Any]], str]:
        return [], ""
