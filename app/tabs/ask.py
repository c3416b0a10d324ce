"""Ask tab: a chat about the analysed clip (AVQA); each answer with its confidence and alternatives.

Words the model never saw in training are flagged in the answer, and the clip's media warnings
(e.g. no audio track) are repeated, so an answer is never read without its caveats.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gradio as gr

from app.errors import guarded
from app.render import percent
from app.state import AppContext, Session

NOT_OBJECTS = {"yes", "no", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
               "left", "middle", "right", "indoor", "outdoor", "simultaneously"}
GENERIC_QUESTIONS = [
    "How many objects are sounding in the video?",
    "Where is the first sounding object?",
    "Is the object on the left louder than the object on the right?",
    "How many types of sounds were heard throughout the video?",
]


def answer_markdown(result: dict[str, Any], clip_name: str) -> str:
    """One answer as chat markdown: answer, confidence, alternatives, then every warning."""
    lines = [f"**{result['answer']}** (confidence {percent(result['probability'])})"]
    if result["alternatives"]:
        lines.append("Alternatives: " + ", ".join(f"{a} ({percent(p)})" for a, p in result["alternatives"]))
    if result["unknown_words"]:
        words = ", ".join(f"`{w}`" for w in result["unknown_words"])
        lines.append(f"⚠ Words the model never saw in training: {words}; the answer may be a guess.")
    for warning in result["warnings"]:
        if not warning.startswith("words the model never saw"):
            lines.append(f"⚠ {warning}")
    lines.append(f"<sub>about {clip_name}</sub>")
    return "\n\n".join(lines)


class AskTab:
    """Questions and answers about the current clip."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def object_names(self) -> list[str]:
        """Answers that are also question words and not yes/no, numbers or sides: the objects the model knows."""
        meta = self.ctx.holder.meta("avqa")
        words = set(meta.get("question_vocab", []))
        return [a for a in meta.get("answer_vocab", []) if a in words and a not in NOT_OBJECTS]

    def example_questions(self) -> list[str]:
        """Generic questions plus some naming the loaded model's own objects."""
        names = self.object_names()[:2]
        specific = [f"Is the {names[0]} in the video making a sound?"] if names else []
        if len(names) > 1:
            specific.append(f"Is the {names[0]} louder than the {names[1]}?")
        return specific + GENERIC_QUESTIONS

    def build(self) -> None:
        self.chat = gr.Chatbot(label="Questions about the analysed clip", height=420,
                               placeholder="Analyse a clip, then ask about it: what sounds, how many, where, when.")
        with gr.Row():
            self.question = gr.Textbox(placeholder="Is the violin playing?", show_label=False, scale=5,
                                       submit_btn=False)
            self.send = gr.Button("Ask", variant="primary", scale=1)
            self.clear = gr.Button("Clear chat", scale=1)
        gr.Examples(examples=[[q] for q in self.example_questions()], inputs=[self.question],
                    label="Questions in the model's vocabulary")
        self.status = gr.HTML()

    @guarded(4)
    def ask(self, question: str, history: list[dict[str, Any]] | None, session: Session,
            video: str | None) -> tuple[Any, ...]:
        """Answer ``question`` about the current clip; on failure the chat and the typed question are kept."""
        predictor = self.ctx.holder.require()
        if "avqa" not in predictor.tasks:
            raise ValueError("The loaded model has no AVQA checkpoint, so it cannot answer questions.")
        if not (question or "").strip():
            raise ValueError("Type a question first, e.g. 'How many objects are sounding in the video?'")
        key = self.ctx.holder.clip_key(session, video)
        result = predictor.ask(question, key=key)
        name = Path(video or session.video or "clip").name
        history = list(history or []) + [{"role": "user", "content": question.strip()},
                                         {"role": "assistant", "content": answer_markdown(result, name)}]
        return history, "", dataclasses.replace(session, last_question=question.strip()), ""

    def clear_chat(self) -> tuple[list[dict[str, Any]], str]:
        return [], ""
