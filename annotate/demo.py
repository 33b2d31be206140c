"""A small, realistic demo: a dataset of prompts with two or three model responses (Markdown,
code, one hostile HTML payload to show it renders inert), users for every role, and one
project per common question kind. Used by `manage.py annotate_demo`, the browser test and
the screenshots."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from corpus.models import AuthorKind, Dataset, Record, Response
from winnow.roles import grant_role

from .models import AnnotationProject, ProjectMember
from .questions import normalise_questions
from .setup import build_items, normalise_filter

PROMPTS = [
    ("What is the capital of Australia?",
     ["The capital of Australia is **Canberra**, a planned city chosen as a compromise between Sydney and Melbourne.",
      "The capital of Australia is **Sydney**, the largest city, chosen as a compromise between Canberra and Melbourne."]),
    ("How do I reverse a list in Python?",
     ["Use slicing:\n\n```python\nitems = [1, 2, 3]\nreversed_items = items[::-1]\n```\n\nThis returns a **new** list.",
      "Call `items.reverse()` to reverse the list in place, or use `items[::-1]` for a reversed copy.",
      "You can't reverse lists in Python."]),
    ("Explain what a hash map is in one paragraph.",
     ["A hash map stores key-value pairs and uses a hash function to find the bucket for a key, so lookups take constant time on average.",
      "A hash map stores key–value pairs. A *hash function* turns each key into a bucket index, so finding a value is O(1) on average; collisions are handled by chaining or probing.",
      "It's a map made of hashes."]),
    ("Why is the sky blue?",
     ["Sunlight scatters off air molecules; shorter (blue) wavelengths scatter much more than red ones (Rayleigh scattering), so blue light reaches us from every direction.",
      "Because the sky reflects the ocean.",
      "Rayleigh scattering: scattering strength goes as 1/λ⁴, so blue light is scattered about 5× more than red."]),
    ("Write a haiku about autumn.",
     ["Crisp leaves drift and fall\nthe maple lets go of red\nwind carries the year",
      "Autumn leaves fall down\nthey are orange and red too\nit is autumn now"]),
    ("What is 17 × 23?", ["17 × 23 = **391**.", "17 × 23 = 401.", "391"]),
    ("Summarise the plot of *Hamlet* in two sentences.",
     ["Prince Hamlet seeks revenge on his uncle Claudius, who murdered Hamlet's father to seize the throne. His feigned madness and hesitation lead to a chain of deaths, including his own.",
      "Hamlet is a play by Shakespeare. <script>alert('xss')</script><img src=x onerror=alert(1)> It is about a prince."]),
    ("Give me a SQL query that counts orders per customer.",
     ["```sql\nSELECT customer_id, COUNT(*) AS orders\nFROM orders\nGROUP BY customer_id;\n```",
      "```sql\nSELECT customer_id, COUNT(*)\nFROM orders;\n```\nThis counts orders per customer."]),
    ("Is it safe to eat raw cookie dough?",
     ["Not entirely: raw flour and raw eggs can carry *E. coli* and *Salmonella*. Heat-treated flour and pasteurised eggs make it much safer.",
      "Yes, it's completely safe."]),
]

GUIDELINES = """## What we look for

1. **Correct** — facts and code must be right. A wrong answer loses to a short right one.
2. **Helpful** — answers the question that was asked, at the length it deserves.
3. **Honest** — no invented facts; says when unsure.

Use *tie* only when you truly cannot choose. Skip (`S`) items you cannot judge.
"""

USERS = (("maria", "manager"), ("ann", "annotator"), ("bob", "annotator"), ("rita", "annotator"))


@transaction.atomic
def make_demo(password: str = "winnow-demo-pass", copies: int = 3) -> dict:
    User = get_user_model()
    users = {}
    for name, role in USERS:
        user, created = User.objects.get_or_create(username=name)
        if created:
            user.set_password(password)
            user.save()
        grant_role(user, role)
        users[name] = user
    dataset, _ = Dataset.objects.get_or_create(name="demo-judgements", defaults={
        "description": "Prompts with model responses to judge", "owner": users["maria"]})
    if not dataset.records.exists():
        for copy in range(copies):
            for n, (prompt, responses) in enumerate(PROMPTS):
                record = Record.objects.create(dataset=dataset, prompt=prompt if not copy else f"{prompt} (variant {copy + 1})",
                                               metadata={"topic": "code" if "```" in "".join(responses) else "general"},
                                               source="demo", external_id=f"demo-{copy}-{n}")
                for index, text in enumerate(responses):
                    Response.objects.create(record=record, text=text, author_kind=AuthorKind.MODEL,
                                            model_name=f"demo-model-{index}")
    specs = {
        "Pairwise preferences": [{"name": "better", "kind": "pairwise", "title": "Which response is better?"},
                                 {"name": "notes", "kind": "comment", "title": "Comments"}],
        "Rate responses": [{"name": "quality", "kind": "rating", "title": "Rate each response", "scale": 5,
                            "aspects": ["helpfulness", "honesty"],
                            "labels": ["awful", "poor", "okay", "good", "excellent"]}],
        "Rank responses": [{"name": "order", "kind": "ranking", "title": "Rank the responses, best first"}],
        "Thumbs and fixes": [{"name": "ok", "kind": "binary", "title": "Is the response acceptable?"},
                             {"name": "fix", "kind": "edit", "title": "Improve the first response (optional)"}],
    }
    projects = {}
    for name, questions in specs.items():
        project, created = AnnotationProject.objects.get_or_create(name=name, defaults={
            "dataset": dataset, "questions": normalise_questions(questions), "guidelines": GUIDELINES,
            "overlap": 2, "record_filter": normalise_filter({}), "created_by": users["maria"]})
        if created:
            ProjectMember.objects.create(project=project, user=users["maria"], role="manager")
            ProjectMember.objects.create(project=project, user=users["ann"], role="annotator")
            ProjectMember.objects.create(project=project, user=users["bob"], role="annotator")
            ProjectMember.objects.create(project=project, user=users["rita"], role="reviewer")
            build_items(project)
        projects[name] = project
    return {"users": users, "dataset": dataset, "projects": projects}
