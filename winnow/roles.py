"""Who may do what.

Three roles: admin (a superuser), manager (member of the "manager" group) and annotator
(member of the "annotator" group). Managers run the corpus: datasets, imports, jobs.
Annotators only see what they are assigned to (see corpus.access). A signed-in user with
no role gets 403 everywhere in the API.
"""

from django.contrib.auth.models import Group
from rest_framework.permissions import SAFE_METHODS, BasePermission

ADMIN = "admin"
MANAGER = "manager"
ANNOTATOR = "annotator"
GROUP_ROLES = (MANAGER, ANNOTATOR)


def role_of(user) -> str | None:
    """The strongest role the user holds, or None."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    cached = getattr(user, "_winnow_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.filter(name__in=GROUP_ROLES).values_list("name", flat=True))
    role = MANAGER if MANAGER in names else ANNOTATOR if ANNOTATOR in names else None
    user._winnow_role = role
    return role


def is_manager(user) -> bool:
    """Admins can do whatever managers can."""
    return role_of(user) in (ADMIN, MANAGER)


def grant_role(user, role: str) -> None:
    """Give a user a role (tests, the CLI and the admin use this)."""
    if role == ADMIN:
        user.is_superuser = user.is_staff = True
        user.save(update_fields=["is_superuser", "is_staff"])
        return
    if role not in GROUP_ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of admin, manager, annotator")
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    user.__dict__.pop("_winnow_role", None)


class HasRole(BasePermission):
    """Default for every API view: signed in and holding some role."""

    message = "Your account has no Winnow role; ask an admin to make you a manager or annotator."

    def has_permission(self, request, view) -> bool:
        return role_of(request.user) is not None


class ManagerOrReadOnly(BasePermission):
    """Any role may read (object visibility is the queryset's business); managers write."""

    message = "Only managers and admins may change this."

    def has_permission(self, request, view) -> bool:
        role = role_of(request.user)
        if role is None:
            return False
        return request.method in SAFE_METHODS or role in (ADMIN, MANAGER)


class IsManager(BasePermission):
    message = "Only managers and admins may do this."

    def has_permission(self, request, view) -> bool:
        return is_manager(request.user)
